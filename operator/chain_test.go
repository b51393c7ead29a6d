package operator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestVerifyChain(t *testing.T) {
	expired := rec("alice", RoleAdmin)
	expired.NotAfterUnixNano = t0.Add(-time.Minute).UnixNano()
	future := rec("bob", RolePolicy)
	future.NotBeforeUnixNano = t0.Add(time.Minute).UnixNano()
	rootRec := rec("root", RoleAdmin, RoleReviewer)

	tests := []struct {
		name    string
		edit    func(t *testing.T, rs Records)
		op      string
		want    error
		wantMsg string
		roles   []string // of the returned record, when valid
	}{
		{name: "first admin implied by the bundle", op: "root", roles: []string{"admin", "policy", "reviewer", "auditor", "viewer"}},
		{name: "operator signed by the first admin", op: "alice", roles: []string{"admin"}},
		{name: "operator signed by a second admin", op: "bob", roles: []string{"policy"}},
		{name: "first admin's own record, signed with the bundle key", op: "root", roles: []string{"admin", "reviewer"},
			edit: func(t *testing.T, rs Records) { rs["root"] = sign(t, "root", rootRec) }},
		{name: "first admin's record signed with another key", op: "bob", want: ErrBadRecordSignature, wantMsg: `"root"`,
			edit: func(t *testing.T, rs Records) {
				sr, _ := SignRecord("root", testKey("mallory"), rootRec)
				rs["root"] = sr
			}},
		{name: "first admin's record issued by another admin", op: "root", want: ErrBadRecord, wantMsg: "must be issued by itself",
			edit: func(t *testing.T, rs Records) { rs["root"] = sign(t, "alice", rootRec) }},
		{name: "first admin's record without admin", op: "alice", want: ErrIssuerNotAdmin,
			edit: func(t *testing.T, rs Records) { rs["root"] = sign(t, "root", rec("root", RoleViewer)) }},
		{name: "unknown operator", op: "dave", want: ErrUnknownOperator, wantMsg: "meshnode operator add"},
		{name: "record signed with a key not the issuer's", op: "bob", want: ErrBadRecordSignature, wantMsg: `operator "bob"`,
			edit: func(t *testing.T, rs Records) {
				sr, _ := SignRecord("alice", testKey("bob"), rec("bob", RolePolicy))
				rs["bob"] = sr
			}},
		{name: "record bytes changed after signing", op: "bob", want: ErrBadRecordSignature,
			edit: func(t *testing.T, rs Records) {
				r := rec("bob", RolePolicy, RoleAdmin)
				r.Issuer = "alice"
				rs["bob"].Record = mustMarshal(t, r)
			}},
		{name: "operator record expired (revoked)", op: "alice", want: ErrRecordExpired, wantMsg: "new version",
			edit: func(t *testing.T, rs Records) { rs["alice"] = sign(t, "root", expired) }},
		{name: "operator record not yet valid", op: "bob", want: ErrRecordNotYetValid,
			edit: func(t *testing.T, rs Records) { rs["bob"] = sign(t, "alice", future) }},
		{name: "issuer revoked", op: "bob", want: ErrRecordExpired, wantMsg: `operator "bob": issuer: operator "alice"`,
			edit: func(t *testing.T, rs Records) { rs["alice"] = sign(t, "root", expired) }},
		{name: "issuer removed", op: "bob", want: ErrUnknownOperator, wantMsg: `issuer: operator "alice"`,
			edit: func(t *testing.T, rs Records) { delete(rs, "alice") }},
		{name: "issuer not admin", op: "dave", want: ErrIssuerNotAdmin, wantMsg: `issuer "bob"`,
			edit: func(t *testing.T, rs Records) { rs["dave"] = sign(t, "bob", rec("dave", RoleAdmin)) }},
		{name: "self-signed operator", op: "mallory", want: ErrChainLoop,
			edit: func(t *testing.T, rs Records) { rs["mallory"] = sign(t, "mallory", rec("mallory", RoleAdmin)) }},
		{name: "two admins signing each other", op: "x", want: ErrChainLoop,
			edit: func(t *testing.T, rs Records) {
				rs["x"] = sign(t, "y", rec("x", RoleAdmin))
				rs["y"] = sign(t, "x", rec("y", RoleAdmin))
			}},
		{name: "record stored under another name", op: "bob", want: ErrBadRecord, wantMsg: `stored record names "carol"`,
			edit: func(t *testing.T, rs Records) { rs["bob"] = rs["carol"] }},
		{name: "undecodable record", op: "bob", want: ErrBadRecord,
			edit: func(t *testing.T, rs Records) { rs["bob"] = &meshnodev1.SignedOperatorRecord{Record: []byte{1, 2, 3}} }},
		{name: "chain of MaxChainDepth admins", op: "a16", roles: []string{"admin"},
			edit: func(t *testing.T, rs Records) { adminChain(t, rs, MaxChainDepth) }},
		{name: "chain deeper than MaxChainDepth", op: "a17", want: ErrChainTooDeep,
			edit: func(t *testing.T, rs Records) { adminChain(t, rs, MaxChainDepth+1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := testRecords(t)
			if tc.edit != nil {
				tc.edit(t, rs)
			}
			got, err := VerifyChain(testBundle(t), rs, tc.op, t0)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyChain(%s): %v", tc.op, err)
				}
				if got.GetName() != tc.op || !slices.Equal(got.GetRoles(), tc.roles) {
					t.Fatalf("VerifyChain(%s) = %v, want roles %v", tc.op, got, tc.roles)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("VerifyChain(%s) = %v, want %v containing %q", tc.op, err, tc.want, tc.wantMsg)
			}
		})
	}
}

// adminChain adds admins a1..an, a1 signed by root and each next by the one
// before: from an, the first admin is n issuers away.
func adminChain(t *testing.T, rs Records, n int) {
	issuer := "root"
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("a%d", i)
		rs[name] = sign(t, issuer, rec(name, RoleAdmin))
		issuer = name
	}
}

func TestVerifyChainRefusesBadBundle(t *testing.T) {
	tests := map[string]func(*meshnodev1.TrustBundle){
		"no first admin":  func(b *meshnodev1.TrustBundle) { b.FirstAdminName = "" },
		"short admin key": func(b *meshnodev1.TrustBundle) { b.FirstAdminPublicKey = b.FirstAdminPublicKey[:16] },
		"no roots":        func(b *meshnodev1.TrustBundle) { b.Roots = nil },
		"garbage root":    func(b *meshnodev1.TrustBundle) { b.Roots = [][]byte{{0x30, 0x03, 1, 2, 3}} },
		"too many roots":  func(b *meshnodev1.TrustBundle) { b.Roots = slices.Repeat(b.Roots, MaxRoots+1) },
	}
	for name, edit := range tests {
		b := testBundle(t)
		edit(b)
		if err := ValidateBundle(b); !errors.Is(err, ErrBadBundle) {
			t.Errorf("%s: ValidateBundle = %v, want ErrBadBundle", name, err)
		}
		if _, err := DecodeTrustBundle(mustMarshal(t, b)); !errors.Is(err, ErrBadBundle) {
			t.Errorf("%s: DecodeTrustBundle = %v, want ErrBadBundle", name, err)
		}
	}
	// VerifyChain checks the anchor on every call.
	for name, b := range map[string]*meshnodev1.TrustBundle{
		"nil":             nil,
		"no first admin":  {FirstAdminPublicKey: testPub("root")},
		"short admin key": {FirstAdminName: "root", FirstAdminPublicKey: []byte{1}},
	} {
		if _, err := VerifyChain(b, testRecords(t), "alice", t0); !errors.Is(err, ErrBadBundle) {
			t.Errorf("%s: VerifyChain = %v, want ErrBadBundle", name, err)
		}
		if _, err := VerifyUpdate(b, testRecords(t), sign(t, "alice", rec("dave")), t0); !errors.Is(err, ErrBadBundle) {
			t.Errorf("%s: VerifyUpdate = %v, want ErrBadBundle", name, err)
		}
	}
	if _, err := DecodeTrustBundle(make([]byte, MaxBundleBytes+1)); !errors.Is(err, ErrBadBundle) {
		t.Errorf("oversized bundle: %v, want ErrBadBundle", err)
	}
	b, err := DecodeTrustBundle(mustMarshal(t, testBundle(t)))
	if err != nil || b.GetFirstAdminName() != "root" {
		t.Fatalf("DecodeTrustBundle of a good bundle = %v, %v", b, err)
	}
}

// TestOnlineCACannotCreateOperator: whoever holds a key that is not on a
// chain to the bundle's first admin (the CA key on every server is one)
// cannot make an operator, whatever name it claims as issuer.
func TestOnlineCACannotCreateOperator(t *testing.T) {
	rs := testRecords(t)
	for _, issuer := range []string{"root", "alice", "ca"} {
		sr, err := SignRecord(issuer, testKey("ca"), rec("eve", RoleAdmin))
		if err != nil {
			t.Fatal(err)
		}
		rs["eve"] = sr
		if _, err := VerifyChain(testBundle(t), rs, "eve", t0); err == nil {
			t.Errorf("a record signed with the CA key claiming issuer %q verified", issuer)
		}
		if _, err := VerifyUpdate(testBundle(t), testRecords(t), sr, t0); err == nil {
			t.Errorf("VerifyUpdate accepted a record signed with the CA key claiming issuer %q", issuer)
		}
	}
}

func TestVerifyUpdate(t *testing.T) {
	revoke := rec("bob", RolePolicy)
	revoke.NotAfterUnixNano = t0.Add(-time.Second).UnixNano()
	revoke.Version = 2
	rotate := rec("bob", RolePolicy)
	rotate.PublicKey = testPub("bob2")
	rotate.Version = 2
	stale := rec("bob", RolePolicy, RoleAdmin)
	loopRec := rec("alice", RoleAdmin)
	loopRec.Version = 2

	tests := []struct {
		name string
		sr   func(t *testing.T) *meshnodev1.SignedOperatorRecord
		want error
	}{
		{"new operator", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "alice", rec("dave", RoleViewer)) }, nil},
		{"rotation: new key, new version", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "alice", rotate) }, nil},
		{"revocation: not_after in the past", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "root", revoke) }, nil},
		{"same version", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "alice", stale) }, ErrStaleRecord},
		{"issuer not admin", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "carol", rec("dave", RoleAdmin)) }, ErrIssuerNotAdmin},
		{"wrong key", func(t *testing.T) *meshnodev1.SignedOperatorRecord {
			sr, _ := SignRecord("alice", testKey("bob"), rec("dave"))
			return sr
		}, ErrBadRecordSignature},
		// alice re-issued by bob, whom alice issued: the update would
		// leave alice and bob vouching for each other.
		{"closes a loop", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "bob", loopRec) }, ErrChainLoop},
		{"self-issued admin", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "dave", rec("dave", RoleAdmin)) }, ErrChainLoop},
		{"unknown issuer", func(t *testing.T) *meshnodev1.SignedOperatorRecord { return sign(t, "zed", rec("dave")) }, ErrUnknownOperator},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := testRecords(t)
			rs["bob"] = sign(t, "alice", rec("bob", RolePolicy, RoleAdmin)) // bob may issue
			_, err := VerifyUpdate(testBundle(t), rs, tc.sr(t), t0)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyUpdate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAdmins(t *testing.T) {
	rs := testRecords(t)
	if got, want := Admins(testBundle(t), rs, t0), []string{"alice", "root"}; !slices.Equal(got, want) {
		t.Fatalf("Admins = %v, want %v", got, want)
	}
	// After alice's records expire only the first admin remains.
	if got, want := Admins(testBundle(t), rs, t0.Add(2*time.Hour)), []string{"root"}; !slices.Equal(got, want) {
		t.Fatalf("Admins later = %v, want %v", got, want)
	}
	// A first-admin record that drops admin leaves no admin: the state
	// machine must refuse it.
	rs["root"] = sign(t, "root", rec("root", RoleViewer))
	if got := Admins(testBundle(t), rs, t0); len(got) != 0 {
		t.Fatalf("Admins = %v, want none", got)
	}
}
