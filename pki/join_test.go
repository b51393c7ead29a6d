package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/internal/clock"
)

type refusalFixture struct {
	ca    *CA
	store *MemStore
	logs  *logBuffer
	clock *clock.Fake
}

func newRefusalFixture(t *testing.T) *refusalFixture {
	t.Helper()
	f := &refusalFixture{store: NewMemStore(), clock: clock.NewFake(time.Now())}
	m, _, err := NewCAMaterial(testTD, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.SaveCA(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	log, logs := newTestLogger()
	f.logs = logs
	f.ca, err = NewCA(context.Background(), CAConfig{TrustDomain: testTD, Store: f.store, Clock: f.clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *refusalFixture) token(t *testing.T, req TokenRequest) string {
	t.Helper()
	raw, err := f.ca.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func joinReq(t *testing.T, raw, name string) *meshnodev1.JoinRequest {
	t.Helper()
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		t.Fatal(err)
	}
	req, err := NewJoinRequest(raw, name, key)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// refused runs Join and checks it was refused with reason want, gRPC code,
// a message containing text, a CA log line, and no certificate issued.
func (f *refusalFixture) refused(t *testing.T, req *meshnodev1.JoinRequest, want error, code codes.Code, text string) {
	t.Helper()
	issuedBefore := strings.Count(f.logs.String(), "issued certificate")
	resp, err := f.ca.Join(context.Background(), req)
	if resp != nil {
		t.Fatal("a refused join returned a response")
	}
	wantErrIs(t, err, want)
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Fatalf("status = %v %q, want %v containing %q", st.Code(), st.Message(), code, text)
	}
	if !strings.Contains(f.logs.String(), "refused join") || !strings.Contains(f.logs.String(), text) {
		t.Fatalf("CA log lacks the refusal: %s", f.logs.String())
	}
	if strings.Count(f.logs.String(), "issued certificate") != issuedBefore {
		t.Fatal("a certificate was issued for a refused join")
	}
}

func TestJoinRefusesMalformedToken(t *testing.T) {
	f := newRefusalFixture(t)
	good := f.token(t, TokenRequest{})
	parts := strings.Split(good, ".")
	for name, tok := range map[string]string{
		"empty":        "",
		"garbage":      "not-a-token",
		"three dots":   "a.b.c",
		"no signature": parts[0] + "." + parts[1] + ".",
		"oversized":    strings.Repeat("A", MaxTokenSize+1),
		"hs256":        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
	} {
		t.Run(name, func(t *testing.T) {
			req := joinReq(t, good, "n1")
			req.Token = tok
			f.refused(t, req, ErrTokenMalformed, codes.InvalidArgument, "malformed")
		})
	}
}

func TestJoinRefusesExpiredToken(t *testing.T) {
	f := newRefusalFixture(t)
	raw := f.token(t, TokenRequest{TTL: time.Minute})
	f.clock.Advance(2 * time.Minute)
	f.refused(t, joinReq(t, raw, "n1"), ErrTokenExpired, codes.PermissionDenied, "expired")
}

func TestJoinRefusesReusedToken(t *testing.T) {
	f := newRefusalFixture(t)
	raw := f.token(t, TokenRequest{})
	if _, err := f.ca.Join(context.Background(), joinReq(t, raw, "n1")); err != nil {
		t.Fatal(err)
	}
	f.refused(t, joinReq(t, raw, "n2"), ErrTokenUsed, codes.PermissionDenied, "already used")
}

func TestJoinRefusesWrongRoleToken(t *testing.T) {
	f := newRefusalFixture(t)
	req := joinReq(t, f.token(t, TokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_CLIENT}), "n1")
	req.Role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
	f.refused(t, req, ErrTokenWrongRole, codes.PermissionDenied, "does not allow this role")
	// A server token may join as server, or as client.
	for _, role := range []meshnodev1.JoinRole{meshnodev1.JoinRole_JOIN_ROLE_SERVER, meshnodev1.JoinRole_JOIN_ROLE_CLIENT} {
		req := joinReq(t, f.token(t, TokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER}), "s-"+role.String())
		req.Role = role
		if resp, err := f.ca.Join(context.Background(), req); err != nil || resp.Role != role {
			t.Fatalf("server token joining as %v: %v", role, err)
		}
	}
	// Only the join as a server is recorded as a server's admission; the
	// refused one and the client join are not.
	for node, want := range map[string]bool{"n1": false, "s-JOIN_ROLE_SERVER": true, "s-JOIN_ROLE_CLIENT": false} {
		if got := f.store.ServerAdmitted(node); got != want {
			t.Errorf("ServerAdmitted(%s) = %v, want %v", node, got, want)
		}
	}
}

func TestJoinRefusesWrongClusterToken(t *testing.T) {
	f := newRefusalFixture(t)
	t.Run("other trust domain", func(t *testing.T) {
		other := newTokenCA(t, "other.test")
		f.refused(t, joinReq(t, other.token(t, TokenRequest{}), "n1"), ErrTokenWrongCluster, codes.PermissionDenied, "another cluster")
	})
	t.Run("same name, other root", func(t *testing.T) {
		other := newTokenCA(t, testTD)
		f.refused(t, joinReq(t, other.token(t, TokenRequest{}), "n1"), ErrTokenWrongCluster, codes.PermissionDenied, "not one of this cluster's roots")
	})
}

// newTokenCA is another, independent cluster.
func newTokenCA(t *testing.T, td string) *refusalFixture {
	t.Helper()
	f := &refusalFixture{store: NewMemStore(), clock: clock.NewFake(time.Now())}
	m, _, err := NewCAMaterial(td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_ = f.store.SaveCA(context.Background(), m)
	f.ca, err = NewCA(context.Background(), CAConfig{TrustDomain: td, Store: f.store, Logger: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestJoinRefusesForgedToken: a token with this cluster's root fingerprint
// and trust domain but signed by another key (anyone can read fp and td
// from a token) is refused.
func TestJoinRefusesForgedToken(t *testing.T) {
	f := newRefusalFixture(t)
	attacker := newTokenCA(t, testTD)
	forger := *attacker.ca.signer()
	forger.rootFP = f.ca.RootFingerprint()
	raw, _, err := signToken(&forger, TokenRequest{Role: meshnodev1.JoinRole_JOIN_ROLE_SERVER}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := joinReq(t, raw, "n1")
	req.Role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
	f.refused(t, req, ErrTokenSignature, codes.PermissionDenied, "signature")
}

func TestJoinRefusesNameDifferentFromBoundName(t *testing.T) {
	f := newRefusalFixture(t)
	raw := f.token(t, TokenRequest{Node: "alice"})
	f.refused(t, joinReq(t, raw, "mallory"), ErrTokenName, codes.PermissionDenied, "bound to another node name")
	if _, err := f.ca.Join(context.Background(), joinReq(t, raw, "alice")); err != nil {
		t.Fatalf("the bound name itself was refused: %v", err)
	}
}

func csrDER(t *testing.T, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	key, _ := keyutil.GenerateDefaultSigner()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestJoinRefusesCSRWithExtraSANs(t *testing.T) {
	f := newRefusalFixture(t)
	raw := f.token(t, TokenRequest{})
	self := NodeID(testTD, "n1").URL()
	other, _ := url.Parse("spiffe://mesh.test/node/n2")
	cases := map[string]*x509.CertificateRequest{
		"DNS SAN":         {URIs: []*url.URL{self}, DNSNames: []string{"evil.example"}},
		"IP SAN":          {URIs: []*url.URL{self}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}},
		"email SAN":       {URIs: []*url.URL{self}, EmailAddresses: []string{"a@b.c"}},
		"two URI SANs":    {URIs: []*url.URL{self, other}},
		"other node URI":  {URIs: []*url.URL{other}},
		"other CN":        {Subject: pkix.Name{CommonName: "n2"}, URIs: []*url.URL{self}},
		"agent id as URI": {URIs: []*url.URL{AgentID(testTD, "n1", "a").URL()}},
	}
	for name, tmpl := range cases {
		t.Run(name, func(t *testing.T) {
			req := joinReq(t, raw, "n1")
			req.Csr = csrDER(t, tmpl)
			f.refused(t, req, ErrBadCSR, codes.InvalidArgument, "certificate request refused")
		})
	}
	// The refusals did not burn the token.
	if _, err := f.ca.Join(context.Background(), joinReq(t, raw, "n1")); err != nil {
		t.Fatalf("token unusable after refused CSRs: %v", err)
	}
}

func TestJoinRefusesCSRWithBadSignature(t *testing.T) {
	f := newRefusalFixture(t)
	req := joinReq(t, f.token(t, TokenRequest{}), "n1")
	req.Csr[len(req.Csr)-5] ^= 0xff
	f.refused(t, req, ErrBadCSR, codes.InvalidArgument, "certificate request refused")
}

func TestJoinRefusesRevokedName(t *testing.T) {
	f := newRefusalFixture(t)
	if err := f.ca.Revoke(context.Background(), &Revocation{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	f.refused(t, joinReq(t, f.token(t, TokenRequest{}), "n1"), ErrRevoked, codes.PermissionDenied, "revoked")
}

func renewReq(t *testing.T, id ID) *meshnodev1.RenewRequest {
	t.Helper()
	key, _ := keyutil.GenerateDefaultSigner()
	csr, err := NewCSR(id, key)
	if err != nil {
		t.Fatal(err)
	}
	return &meshnodev1.RenewRequest{Csr: csr}
}

func TestRenewRefusesRevokedNode(t *testing.T) {
	f := newRefusalFixture(t)
	id := NodeID(testTD, "n1")
	if _, err := f.ca.Renew(context.Background(), id, renewReq(t, id)); err != nil {
		t.Fatalf("renewal before revocation: %v", err)
	}
	if err := f.ca.Revoke(context.Background(), &Revocation{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	_, err := f.ca.Renew(context.Background(), id, renewReq(t, id))
	wantErrIs(t, err, ErrRevoked)
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
		t.Fatalf("code %v", st.Code())
	}
	if !strings.Contains(f.logs.String(), "refused renewal") {
		t.Fatal("no CA log line for the refused renewal")
	}
}

func TestRenewRefusesCSRForAnotherName(t *testing.T) {
	f := newRefusalFixture(t)
	_, err := f.ca.Renew(context.Background(), NodeID(testTD, "n1"), renewReq(t, NodeID(testTD, "n2")))
	wantErrIs(t, err, ErrBadCSR)
	_, err = f.ca.Renew(context.Background(), NodeID("other.test", "n1"), renewReq(t, NodeID("other.test", "n1")))
	wantErrIs(t, err, ErrBadCSR)
}

func TestKeyFileMode0644Refused(t *testing.T) {
	dir := t.TempDir()
	f := newRefusalFixture(t)
	creds, err := f.ca.IssueLocal(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(dir); err != nil { // a second generation replaces the first
		t.Fatal(err)
	}
	kp := KeyPath(dir)
	for path, want := range map[string]os.FileMode{kp: 0o600, Dir(dir): 0o700, filepath.Dir(kp): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
		}
	}
	if _, err := LoadCredentials(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kp, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCredentials(dir)
	wantErrIs(t, err, ErrInsecureKeyFile)
	if !strings.Contains(err.Error(), kp) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("error %q does not name the file and the fix", err)
	}
	_, _, err = Bootstrap(context.Background(), f.store, testTD, "n1", dir)
	wantErrIs(t, err, ErrInsecureKeyFile)
	if err := os.Chmod(kp, 0o600); err != nil {
		t.Fatal(err)
	}
	// The bootstrap root key is checked the same way.
	rk := filepath.Join(Dir(dir), rootKeyFile)
	if err := os.WriteFile(rk, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err = Bootstrap(context.Background(), f.store, testTD, "n1", dir)
	wantErrIs(t, err, ErrInsecureKeyFile)
	if !strings.Contains(err.Error(), rk) {
		t.Fatalf("error %q does not name %s", err, rk)
	}
	_ = os.Remove(rk)
	// No temporary files or old generations left behind.
	var names []string
	_ = filepath.WalkDir(Dir(dir), func(p string, d os.DirEntry, err error) error {
		names = append(names, strings.TrimPrefix(p, Dir(dir)))
		return err
	})
	if len(names) != 6 { // "", current, gen-x, gen-x/{node.key,node.crt,roots.crt}
		t.Fatalf("unexpected files in %s: %v", Dir(dir), names)
	}
}

func TestCredentialsFromJoinRefusesWrongAnswers(t *testing.T) {
	f := newRefusalFixture(t)
	raw := f.token(t, TokenRequest{})
	tok, _ := ParseToken(raw)
	key, _ := keyutil.GenerateDefaultSigner()
	req, _ := NewJoinRequest(raw, "n1", key)
	resp, err := f.ca.Join(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := keyutil.GenerateDefaultSigner()
	other := newTokenCA(t, testTD)
	cases := map[string]func() (*meshnodev1.JoinResponse, string, crypto.Signer){
		"other key":  func() (*meshnodev1.JoinResponse, string, crypto.Signer) { return resp, "n1", otherKey },
		"other name": func() (*meshnodev1.JoinResponse, string, crypto.Signer) { return resp, "n2", key },
		"other roots": func() (*meshnodev1.JoinResponse, string, crypto.Signer) {
			r := proto.Clone(resp).(*meshnodev1.JoinResponse)
			r.Roots = [][]byte{other.ca.Roots()[0].Raw}
			return r, "n1", key
		},
		"empty": func() (*meshnodev1.JoinResponse, string, crypto.Signer) { return &meshnodev1.JoinResponse{}, "n1", key },
	}
	for name, mk := range cases {
		r, n, k := mk()
		if _, err := CredentialsFromJoin(tok, n, k, r, time.Now()); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}
