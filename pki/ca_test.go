package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/protobuf/proto"
)

// testNode is a node with credentials and a TLS source.
type testNode struct {
	name   string
	dir    string
	keeper *Keeper
	tls    *TLSSource
}

func newTestNode(t testing.TB, td, name, dir string, c *Credentials, rev Revocations) *testNode {
	t.Helper()
	k := NewKeeper(dir, c)
	src, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: td, Roots: k.Roots, Certificate: k.Certificate, Revocations: rev,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{name: name, dir: dir, keeper: k, tls: src}
}

// bootstrapServer bootstraps a one-server cluster on a fresh MemStore.
func bootstrapServer(t testing.TB, td, name string) (*CA, *MemStore, *testNode) {
	t.Helper()
	store := NewMemStore()
	log, _ := newTestLogger()
	cfg := DefaultCAConfig()
	cfg.TrustDomain, cfg.Store, cfg.Logger = td, store, log
	dir := t.TempDir()
	ca, creds, err := BootstrapWith(context.Background(), cfg, name, dir)
	if err != nil {
		t.Fatal(err)
	}
	return ca, store, newTestNode(t, td, name, dir, creds, store)
}

// writeFrame and readFrame carry one length-prefixed message, as the
// transport's join channel does.
func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(n[:]) > 1<<16 {
		return nil, errors.New("frame too large")
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

// joinOverTLS runs the join exchange over a real TLS connection on the join
// ALPN: server-only TLS, the client authenticating the server by the token's
// root fingerprint. It returns the response or the refusal.
func joinOverTLS(t testing.TB, server *testNode, ca *CA, tok *Token, req *meshnodev1.JoinRequest) (*meshnodev1.JoinResponse, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server.tls.JoinServerConfig())
		if tc.Handshake() != nil || tc.ConnectionState().NegotiatedProtocol != JoinALPN {
			return
		}
		b, err := readFrame(tc)
		if err != nil {
			return
		}
		var in meshnodev1.JoinRequest
		if err := proto.Unmarshal(b, &in); err != nil {
			return
		}
		resp, err := ca.Join(context.Background(), &in)
		if err != nil {
			_ = writeFrame(tc, append([]byte{1}, err.Error()...))
			return
		}
		out, _ := proto.Marshal(resp)
		_ = writeFrame(tc, append([]byte{0}, out...))
	}()
	defer func() { <-done }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, JoinClientTLS(tok))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	b, _ := proto.Marshal(req)
	if err := writeFrame(tc, b); err != nil {
		return nil, err
	}
	ans, err := readFrame(tc)
	if err != nil {
		return nil, err
	}
	if ans[0] != 0 {
		return nil, errors.New(string(ans[1:]))
	}
	var resp meshnodev1.JoinResponse
	if err := proto.Unmarshal(ans[1:], &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// TestBootstrapTokenJoinMTLS is the acceptance path: a server bootstraps,
// makes a token; a second node joins over the join ALPN, saves its
// credentials, and both talk mutual TLS. After a "restart" the joined node
// loads its still-valid certificate and needs no token.
func TestBootstrapTokenJoinMTLS(t *testing.T) {
	ctx := context.Background()
	ca, store, srv := bootstrapServer(t, testTD, "srv")
	raw, err := ca.CreateToken(ctx, TokenRequest{TTL: time.Hour, Node: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		t.Fatal(err)
	}
	req, err := NewJoinRequest(raw, "cli", key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := joinOverTLS(t, srv, ca, tok, req)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	creds, err := CredentialsFromJoin(tok, "cli", key, resp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf := creds.Leaf()
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://mesh.test/node/cli" ||
		leaf.KeyUsage != x509.KeyUsageDigitalSignature || len(leaf.ExtKeyUsage) != 2 || leaf.IsCA ||
		len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Fatalf("issued certificate has wrong shape: uris %v ku %v eku %v", leaf.URIs, leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < DefaultCertLifetime || d > DefaultCertLifetime+2*time.Minute {
		t.Fatalf("lifetime %s, want about %s", d, DefaultCertLifetime)
	}
	cliDir := t.TempDir()
	if err := creds.Save(cliDir); err != nil {
		t.Fatal(err)
	}
	cli := newTestNode(t, testTD, "cli", cliDir, creds, store)
	for _, pair := range [][2]*testNode{{srv, cli}, {cli, srv}} {
		res := handshake(t, pair[0].tls.ServerConfig(), pair[1].tls.ClientConfig())
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("mTLS %s<-%s: %v / %v", pair[0].name, pair[1].name, res.serverErr, res.clientErr)
		}
		if res.serverSaw != NodeID(testTD, pair[1].name) || res.clientSaw != NodeID(testTD, pair[0].name) {
			t.Fatalf("identities: server saw %v, client saw %v", res.serverSaw, res.clientSaw)
		}
	}
	// Restart: the node's files alone suffice.
	again, err := LoadCredentials(cliDir)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := again.Check(testTD, time.Now()); err != nil || id != NodeID(testTD, "cli") {
		t.Fatalf("reloaded credentials: %v %v", id, err)
	}
	if again.Leaf().SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("reloaded a different certificate")
	}
}

// TestJoinClientRefusesServerOfAnotherCluster: the joining node trusts only
// the root in its token, not whatever the server presents.
func TestJoinClientRefusesServerOfAnotherCluster(t *testing.T) {
	caA, _, _ := bootstrapServer(t, testTD, "a")
	caB, _, srvB := bootstrapServer(t, testTD, "b")
	raw, err := caA.CreateToken(context.Background(), TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := ParseToken(raw)
	key, _ := keyutil.GenerateDefaultSigner()
	req, _ := NewJoinRequest(raw, "cli", key)
	_, err = joinOverTLS(t, srvB, caB, tok, req)
	wantErrIs(t, err, ErrUnknownAuthority)
}

func TestBootstrapReusesValidCertificate(t *testing.T) {
	ctx := context.Background()
	store, dir := NewMemStore(), t.TempDir()
	_, c1, err := Bootstrap(ctx, store, testTD, "n1", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, c2, err := Bootstrap(ctx, store, testTD, "n1", dir)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Leaf().SerialNumber.Cmp(c2.Leaf().SerialNumber) != 0 {
		t.Fatal("restart issued a new certificate although the old one is valid")
	}
	if err := CheckKeyFileMode(Dir(dir) + "/" + rootKeyFile); err != nil {
		t.Fatalf("bootstrap root key: %v", err)
	}
	m, _ := store.LoadCA(ctx)
	if k, _ := x509.ParsePKCS8PrivateKey(m.IntermediateKey); k == nil {
		t.Fatal("no intermediate key in store")
	}
}

// TestCAWorksAfterLeaderChange: two CA instances (two servers) over one
// shared store behave as one CA: either signs, and a token used through one
// is refused by the other.
func TestCAWorksAfterLeaderChange(t *testing.T) {
	ctx := context.Background()
	ca1, store, _ := bootstrapServer(t, testTD, "s1")
	ca2, err := NewCA(ctx, CAConfig{TrustDomain: testTD, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	join := func(ca *CA, raw, name string) error {
		key, _ := keyutil.GenerateDefaultSigner()
		req, err := NewJoinRequest(raw, name, key)
		if err != nil {
			return err
		}
		resp, err := ca.Join(ctx, req)
		if err != nil {
			return err
		}
		tok, _ := ParseToken(raw)
		_, err = CredentialsFromJoin(tok, name, key, resp, time.Now())
		return err
	}
	t1, _ := ca1.CreateToken(ctx, TokenRequest{})
	if err := join(ca2, t1, "c1"); err != nil {
		t.Fatalf("new leader refused the old leader's token: %v", err)
	}
	err = join(ca1, t1, "c2")
	wantErrIs(t, err, ErrTokenUsed)
	t2, _ := ca2.CreateToken(ctx, TokenRequest{})
	if err := join(ca1, t2, "c3"); err != nil {
		t.Fatalf("old leader refused the new leader's token: %v", err)
	}
	if err := ca1.Revoke(ctx, &Revocation{NodeName: "c3"}); err != nil {
		t.Fatal(err)
	}
	key, _ := keyutil.GenerateDefaultSigner()
	csr, _ := NewCSR(NodeID(testTD, "c3"), key)
	_, err = ca2.Renew(ctx, NodeID(testTD, "c3"), &meshnodev1.RenewRequest{Csr: csr})
	wantErrIs(t, err, ErrRevoked)
}

// TestRevocationTakesEffectOnOpenCluster: after `node revoke`, new
// handshakes from the revoked node are refused by every peer that reads the
// store's revocations.
func TestRevocationTakesEffectOnOpenCluster(t *testing.T) {
	ctx := context.Background()
	ca, store, srv := bootstrapServer(t, testTD, "srv")
	creds, err := ca.IssueLocal(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	victim := newTestNode(t, testTD, "victim", "", creds, store)
	if res := handshake(t, srv.tls.ServerConfig(), victim.tls.ClientConfig()); res.serverErr != nil {
		t.Fatalf("before revocation: %v", res.serverErr)
	}
	if err := ca.Revoke(ctx, &Revocation{NodeName: "victim", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	res := handshake(t, srv.tls.ServerConfig(), victim.tls.ClientConfig())
	wantErrIs(t, res.serverErr, ErrRevoked)
	res = handshake(t, victim.tls.ServerConfig(), srv.tls.ClientConfig())
	wantErrIs(t, res.clientErr, ErrRevoked)
}

// TestCertSignedByAnotherCARefused: a node of another cluster with the same
// trust domain name cannot talk to this one.
func TestCertSignedByAnotherCARefused(t *testing.T) {
	_, _, a := bootstrapServer(t, testTD, "a")
	_, _, b := bootstrapServer(t, testTD, "b")
	// The dialler checks first in TLS 1.3: b refuses a's server certificate.
	res := handshake(t, a.tls.ServerConfig(), b.tls.ClientConfig())
	wantErrIs(t, res.clientErr, ErrUnknownAuthority)
	if res.serverErr == nil {
		t.Fatal("server completed a refused handshake")
	}
	// A b that (wrongly) trusts a's root as well gets past its own check;
	// then a refuses b's client certificate.
	both := x509.NewCertPool()
	both.AddCert(a.keeper.Current().Roots[0])
	both.AddCert(b.keeper.Current().Roots[0])
	bTrustsAll, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: testTD, Roots: func() *x509.CertPool { return both }, Certificate: b.keeper.Certificate,
	})
	if err != nil {
		t.Fatal(err)
	}
	res = handshake(t, a.tls.ServerConfig(), bTrustsAll.ClientConfig())
	wantErrIs(t, res.serverErr, ErrUnknownAuthority)
}

func TestInitOfflineAndImport(t *testing.T) {
	dir := t.TempDir() + "/ca"
	if err := InitOffline(dir, testTD, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := InitOffline(dir, testTD, time.Now()); err == nil {
		t.Fatal("InitOffline overwrote an existing CA")
	}
	for _, f := range []string{OfflineRootKey, OfflineIntermediateKey} {
		if err := CheckKeyFileMode(dir + "/" + f); err != nil {
			t.Fatal(err)
		}
	}
	m, err := LoadOfflineCA(dir, testTD)
	if err != nil {
		t.Fatal(err)
	}
	store := NewMemStore()
	if err := store.SaveCA(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA(context.Background(), CAConfig{TrustDomain: testTD, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueLocal(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCA(context.Background(), CAConfig{TrustDomain: "other.test", Store: store}); err == nil {
		t.Fatal("CA accepted material of another trust domain")
	}
}

func TestCAConfigValidate(t *testing.T) {
	for _, c := range []CAConfig{
		{},
		{TrustDomain: testTD},
		{TrustDomain: testTD, Store: NewMemStore(), CertLifetime: time.Minute},
		{TrustDomain: "Bad Domain", Store: NewMemStore()},
	} {
		if err := c.Validate(); err == nil {
			t.Fatalf("Validate(%+v) = nil", c)
		}
	}
	_, err := NewCA(context.Background(), CAConfig{TrustDomain: testTD, Store: NewMemStore()})
	wantErrIs(t, err, ErrNotFound)
}
