package operator

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

const setPolicy = "meshnode.v1.PolicyService/SetPolicy"

var testCluster = []byte("cluster-1")

func policyReq(capability string) *meshnodev1.SetPolicyRequest {
	return &meshnodev1.SetPolicyRequest{Policy: &meshnodev1.RoutingPolicy{Capability: capability, Policy: "quality", MaxHops: 3}}
}

// signedPolicy is bob's (policy role) signed SetPolicy for "summarize" at t0.
func signedPolicy(t testing.TB) *meshnodev1.SignedCommand {
	t.Helper()
	sc, err := SignCommand("bob", testKey("bob"), testCluster, setPolicy, policyReq("summarize"), t0, time.Minute, nil)
	if err != nil {
		t.Fatalf("SignCommand: %v", err)
	}
	return sc
}

// resign replaces sc's signature with key's over its current fields.
func resign(sc *meshnodev1.SignedCommand, key ed25519.PrivateKey) {
	sc.Signature = ed25519.Sign(key, CommandMessage(sc))
}

func TestVerifyCommand(t *testing.T) {
	type call struct {
		cluster []byte
		method  string
		req     proto.Message
		now     time.Time
		need    Role
		records Records
	}
	tests := []struct {
		name    string
		edit    func(*meshnodev1.SignedCommand, *call)
		want    error
		wantMsg []string
	}{
		{name: "valid", edit: func(*meshnodev1.SignedCommand, *call) {}},
		{name: "valid just before expiry", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.now = t0.Add(time.Minute - 1) }},
		{name: "valid with issued_at within the clock skew", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.now = t0.Add(-ClockSkew) }},
		{name: "unsigned", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.Signature = nil },
			want: ErrUnsigned, wantMsg: []string{"meshnode operator keygen", "have an admin add it"}},
		{name: "nil envelope", edit: nil, want: ErrUnsigned},
		{name: "short nonce", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.Nonce = sc.Nonce[:8] },
			want: ErrMalformedCommand, wantMsg: []string{"nonce is 8 bytes"}},
		{name: "short digest", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.RequestDigest = sc.RequestDigest[:31] },
			want: ErrMalformedCommand, wantMsg: []string{"digest is 31 bytes"}},
		{name: "other cluster", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.cluster = []byte("cluster-2") },
			want: ErrWrongCluster, wantMsg: []string{"this is cluster"}},
		{name: "other method", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.method = "meshnode.v1.PolicyService/DeletePolicy" },
			want: ErrWrongMethod, wantMsg: []string{setPolicy}},
		{name: "body changed after signing", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.req = policyReq("translate") },
			want: ErrBodyChanged, wantMsg: []string{"sign the request you send"}},
		{name: "unknown operator", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.Operator = "dave"; resign(sc, testKey("dave")) },
			want: ErrUnknownOperator, wantMsg: []string{`"dave"`, "meshnode operator add"}},
		{name: "revoked operator", edit: func(_ *meshnodev1.SignedCommand, c *call) {
			r := rec("bob", RolePolicy)
			r.NotAfterUnixNano = t0.Add(-time.Second).UnixNano()
			c.records["bob"] = sign(t, "alice", r)
		}, want: ErrUnknownOperator, wantMsg: []string{"expired"}},
		{name: "issuer revoked", edit: func(_ *meshnodev1.SignedCommand, c *call) { delete(c.records, "alice") },
			want: ErrUnknownOperator, wantMsg: []string{`issuer: operator "alice"`}},
		{name: "wrong key", edit: func(sc *meshnodev1.SignedCommand, _ *call) { resign(sc, testKey("mallory")) },
			want: ErrBadSignature, wantMsg: []string{`operator "bob"`, "--operator-key"}},
		{name: "signature of another operator", edit: func(sc *meshnodev1.SignedCommand, _ *call) { resign(sc, testKey("alice")) },
			want: ErrBadSignature},
		{name: "truncated signature", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.Signature = sc.Signature[:63] },
			want: ErrBadSignature},
		{name: "nonce changed after signing", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.Nonce[0] ^= 1 },
			want: ErrBadSignature},
		{name: "expiry extended after signing", edit: func(sc *meshnodev1.SignedCommand, _ *call) { sc.ExpiresAtUnixNano += int64(time.Hour) },
			want: ErrBadSignature},
		{name: "expired", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.now = t0.Add(time.Minute) },
			want: ErrExpired, wantMsg: []string{"expired at 2026-12-07T12:01:00Z", "server time is 2026-12-07T12:01:00Z"}},
		{name: "not yet valid", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.now = t0.Add(-ClockSkew - 1) },
			want: ErrExpired, wantMsg: []string{"not valid before 2026-12-07T12:00:00Z", "check the clocks"}},
		{name: "expires before issue", edit: func(sc *meshnodev1.SignedCommand, c *call) {
			sc.IssuedAtUnixNano = t0.Add(20 * time.Second).UnixNano()
			sc.ExpiresAtUnixNano = t0.Add(10 * time.Second).UnixNano()
			resign(sc, testKey("bob"))
		}, want: ErrExpired},
		{name: "ttl above the maximum", edit: func(sc *meshnodev1.SignedCommand, _ *call) {
			sc.ExpiresAtUnixNano = t0.Add(MaxCommandTTL + 1).UnixNano()
			resign(sc, testKey("bob"))
		}, want: ErrTTLTooLong, wantMsg: []string{"at most 5m0s"}},
		{name: "role missing", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.need = RoleReviewer },
			want: ErrRoleMissing, wantMsg: []string{`needs "reviewer"`, "[policy]"}},
		{name: "admin does not imply policy", edit: func(sc *meshnodev1.SignedCommand, c *call) {
			sc.Operator = "alice"
			resign(sc, testKey("alice"))
		}, want: ErrRoleMissing},
		{name: "invalid role asked", edit: func(_ *meshnodev1.SignedCommand, c *call) { c.need = "" }, want: ErrRoleMissing},
		// Order: a command wrong in several ways reports the first check.
		{name: "other cluster and expired", edit: func(_ *meshnodev1.SignedCommand, c *call) {
			c.cluster = []byte("x")
			c.now = t0.Add(time.Hour)
		}, want: ErrWrongCluster},
		{name: "wrong key and expired", edit: func(sc *meshnodev1.SignedCommand, c *call) {
			resign(sc, testKey("mallory"))
			c.now = t0.Add(2 * time.Minute)
		}, want: ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := signedPolicy(t)
			c := &call{testCluster, setPolicy, policyReq("summarize"), t0, RolePolicy, testRecords(t)}
			if tc.edit == nil {
				sc = nil
			} else {
				tc.edit(sc, c)
			}
			err := VerifyCommand(sc, c.cluster, c.method, c.req, c.now, lookupIn(t, c.records, c.now), c.need)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyCommand: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyCommand = %v, want %v", err, tc.want)
			}
			for _, m := range append(tc.wantMsg, c.method) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestSignCommandRefuses(t *testing.T) {
	req := policyReq("x")
	tests := []struct {
		name string
		sign func() error
	}{
		{"ttl above maximum", func() error {
			_, err := SignCommand("bob", testKey("bob"), testCluster, setPolicy, req, t0, MaxCommandTTL+1, nil)
			return err
		}},
		{"zero ttl", func() error {
			_, err := SignCommand("bob", testKey("bob"), testCluster, setPolicy, req, t0, 0, nil)
			return err
		}},
		{"short nonce", func() error {
			_, err := SignCommand("bob", testKey("bob"), testCluster, setPolicy, req, t0, time.Minute, []byte{1})
			return err
		}},
		{"bad name", func() error {
			_, err := SignCommand("", testKey("bob"), testCluster, setPolicy, req, t0, time.Minute, nil)
			return err
		}},
		{"short key", func() error {
			_, err := SignCommand("bob", testKey("bob")[:32], testCluster, setPolicy, req, t0, time.Minute, nil)
			return err
		}},
		{"no cluster", func() error {
			_, err := SignCommand("bob", testKey("bob"), nil, setPolicy, req, t0, time.Minute, nil)
			return err
		}},
		{"no method", func() error {
			_, err := SignCommand("bob", testKey("bob"), testCluster, "", req, t0, time.Minute, nil)
			return err
		}},
	}
	for _, tc := range tests {
		if err := tc.sign(); err == nil {
			t.Errorf("%s: SignCommand succeeded", tc.name)
		}
	}
}

func TestSignCommandNonce(t *testing.T) {
	a, b := signedPolicy(t), signedPolicy(t)
	if len(a.GetNonce()) != NonceSize || bytes.Equal(a.GetNonce(), b.GetNonce()) {
		t.Fatalf("random nonces %x and %x", a.GetNonce(), b.GetNonce())
	}
	fixed := bytes.Repeat([]byte{7}, NonceSize)
	sc, err := SignCommand("bob", testKey("bob"), testCluster, setPolicy, policyReq("x"), t0, time.Minute, fixed)
	if err != nil || !bytes.Equal(sc.GetNonce(), fixed) {
		t.Fatalf("SignCommand with a nonce: %v, nonce %x", err, sc.GetNonce())
	}
	if got := Expiry(sc); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Expiry = %s", got)
	}
}

func TestNonceKey(t *testing.T) {
	n := func(op string, nonce string) string {
		return NonceKey(&meshnodev1.SignedCommand{Operator: op, Nonce: []byte(nonce)})
	}
	keys := map[string]bool{}
	for _, k := range []string{n("bob", "0123456789abcdef"), n("bo", "b0123456789abcde"), n("alice", "0123456789abcdef"), n("bob", "0123456789abcdeF")} {
		if keys[k] {
			t.Fatalf("NonceKey collision: %q", k)
		}
		keys[k] = true
	}
	sc := signedPolicy(t)
	if NonceKey(sc) != NonceKey(proto.CloneOf(sc)) {
		t.Fatal("NonceKey differs for the same command")
	}
}

// TestCommandMessageInjective: moving bytes from one field to the next
// changes the signed message, so a signature cannot be reused for another
// split of the same bytes.
func TestCommandMessageInjective(t *testing.T) {
	a := &meshnodev1.SignedCommand{ClusterId: []byte("ab"), Method: "c", Operator: "x"}
	b := &meshnodev1.SignedCommand{ClusterId: []byte("a"), Method: "bc", Operator: "x"}
	c := &meshnodev1.SignedCommand{ClusterId: []byte("ab"), Method: "c", Operator: "x", Signature: []byte("ignored")}
	if bytes.Equal(CommandMessage(a), CommandMessage(b)) {
		t.Fatal("different splits encode the same")
	}
	if !bytes.Equal(CommandMessage(a), CommandMessage(c)) {
		t.Fatal("the signature field is part of the message")
	}
	if !bytes.HasPrefix(CommandMessage(a)[4:], []byte(CommandContext)) {
		t.Fatal("message does not start with the context")
	}
}

func TestDigestDeterministic(t *testing.T) {
	d1, err := Digest(policyReq("a"))
	if err != nil {
		t.Fatal(err)
	}
	// A copy that went through the wire digests the same.
	var back meshnodev1.SetPolicyRequest
	if err := proto.Unmarshal(mustMarshal(t, policyReq("a")), &back); err != nil {
		t.Fatal(err)
	}
	d2, _ := Digest(&back)
	d3, _ := Digest(policyReq("b"))
	if d1 != d2 || d1 == d3 {
		t.Fatalf("digests %x %x %x", d1, d2, d3)
	}
}

func TestDecodeSignedCommand(t *testing.T) {
	sc := signedPolicy(t)
	got, err := DecodeSignedCommand(mustMarshal(t, sc))
	if err != nil || !proto.Equal(got, sc) {
		t.Fatalf("DecodeSignedCommand = %v, %v", got, err)
	}
	for name, b := range map[string][]byte{
		"too large": make([]byte, MaxSignedCommandBytes+1),
		"not proto": {0xff, 0xff},
	} {
		if _, err := DecodeSignedCommand(b); !errors.Is(err, ErrMalformedCommand) {
			t.Errorf("%s: DecodeSignedCommand = %v, want ErrMalformedCommand", name, err)
		}
	}
}

func TestVerifyCommandLookupContract(t *testing.T) {
	sc := signedPolicy(t)
	req := policyReq("summarize")
	lookups := map[string]Lookup{
		"nil lookup":       nil,
		"nil record":       func(string) (*meshnodev1.OperatorRecord, error) { return nil, nil },
		"another's record": func(string) (*meshnodev1.OperatorRecord, error) { return rec("alice", RolePolicy), nil },
	}
	for name, lookup := range lookups {
		if err := VerifyCommand(sc, testCluster, setPolicy, req, t0, lookup, RolePolicy); !errors.Is(err, ErrUnknownOperator) {
			t.Errorf("%s: VerifyCommand = %v, want ErrUnknownOperator", name, err)
		}
	}
}
