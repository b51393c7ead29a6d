package pki

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testTD = "mesh.test"

type revokedSet struct {
	serials map[string]bool
	ids     map[ID]bool
}

func (r *revokedSet) IsRevoked(serial *big.Int, id ID) bool {
	return r.serials[serial.String()] || r.ids[id]
}

func TestHandshakeMutualOK(t *testing.T) {
	ca := newRawCA(t, "cluster")
	srv := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "srv")), nil, nil)
	cli := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "cli")), nil, nil)
	res := handshake(t, srv.ServerConfig(), cli.ClientConfig())
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
	}
	if res.serverSaw != NodeID(testTD, "cli") || res.clientSaw != NodeID(testTD, "srv") {
		t.Fatalf("server saw %v, client saw %v", res.serverSaw, res.clientSaw)
	}
	if got := srv.ServerConfig().MinVersion; got != tls.VersionTLS13 {
		t.Fatalf("MinVersion = %x", got)
	}
}

// TestServerRefusesClientCert covers every reason the accepting side
// refuses a client certificate. Each case is a real handshake; the error
// must name the reason and the refusal must be logged.
func TestServerRefusesClientCert(t *testing.T) {
	ca := newRawCA(t, "cluster")
	foreign := newRawCA(t, "foreign")
	now := time.Now()
	spec := func(mod func(*leafSpec)) leafSpec {
		s := nodeSpec(testTD, "cli")
		mod(&s)
		return s
	}
	revokedBySerial := ca.leaf(t, nodeSpec(testTD, "rev1"))
	rev := &revokedSet{
		serials: map[string]bool{revokedBySerial.Leaf.SerialNumber.String(): true},
		ids:     map[ID]bool{NodeID(testTD, "rev2"): true},
	}
	cases := []struct {
		name string
		cert *tls.Certificate
		want error
		text string
	}{
		{"foreign CA", foreign.leaf(t, nodeSpec(testTD, "cli")), ErrUnknownAuthority, "not signed by the cluster CA"},
		{"expired", ca.leaf(t, spec(func(s *leafSpec) { s.notBefore, s.notAfter = now.Add(-2*time.Hour), now.Add(-time.Hour) })), ErrCertExpired, "expired"},
		{"not yet valid", ca.leaf(t, spec(func(s *leafSpec) { s.notBefore = now.Add(time.Hour); s.notAfter = now.Add(2 * time.Hour) })), ErrCertNotYetValid, "not yet valid"},
		{"wrong trust domain", ca.leaf(t, nodeSpec("other.test", "cli")), ErrWrongTrustDomain, "another trust domain"},
		{"no URI SAN", ca.leaf(t, spec(func(s *leafSpec) { s.uris = nil })), ErrBadID, "0 URI SANs"},
		{"two URI SANs", ca.leaf(t, spec(func(s *leafSpec) { s.uris = append(s.uris, NodeID(testTD, "x").String()) })), ErrBadID, "2 URI SANs"},
		{"non-SPIFFE URI", ca.leaf(t, spec(func(s *leafSpec) { s.uris = []string{"https://mesh.test/node/cli"} })), ErrBadID, "not a meshnode SPIFFE id"},
		{"no digitalSignature", ca.leaf(t, spec(func(s *leafSpec) { s.ku = x509.KeyUsageKeyEncipherment })), ErrKeyUsage, "digitalSignature"},
		{"server-only EKU", ca.leaf(t, spec(func(s *leafSpec) { s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })), ErrKeyUsage, "clientAuth"},
		{"CA cert as leaf", ca.leaf(t, spec(func(s *leafSpec) { s.isCA = true; s.ku |= x509.KeyUsageCertSign })), ErrKeyUsage, "CA certificate"},
		{"revoked serial", revokedBySerial, ErrRevoked, "revoked"},
		{"revoked node", ca.leaf(t, nodeSpec(testTD, "rev2")), ErrRevoked, "revoked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := newTestLogger()
			srv := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "srv")), rev, log)
			cli := ca.source(t, testTD, tc.cert, nil, nil)
			res := handshake(t, srv.ServerConfig(), cli.ClientConfig())
			wantErrIs(t, res.serverErr, tc.want)
			if !strings.Contains(res.serverErr.Error(), tc.text) {
				t.Fatalf("server error %q does not name the reason %q", res.serverErr, tc.text)
			}
			if res.clientErr == nil {
				t.Fatal("client saw a working connection to a server that refused it")
			}
			if !strings.Contains(logs.String(), "refused peer certificate") || !strings.Contains(logs.String(), tc.text) {
				t.Fatalf("no log line naming the refusal: %q", logs.String())
			}
		})
	}
}

// TestClientRefusesServerCert covers the dialling side's checks.
func TestClientRefusesServerCert(t *testing.T) {
	ca := newRawCA(t, "cluster")
	foreign := newRawCA(t, "foreign")
	clientOnly := nodeSpec(testTD, "srv")
	clientOnly.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cases := []struct {
		name string
		cert *tls.Certificate
		want error
	}{
		{"foreign CA", foreign.leaf(t, nodeSpec(testTD, "srv")), ErrUnknownAuthority},
		{"wrong trust domain", ca.leaf(t, nodeSpec("other.test", "srv")), ErrWrongTrustDomain},
		{"client-only EKU", ca.leaf(t, clientOnly), ErrKeyUsage},
		{"revoked", ca.leaf(t, nodeSpec(testTD, "rev")), ErrRevoked},
	}
	rev := &revokedSet{ids: map[ID]bool{NodeID(testTD, "rev"): true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := ca.source(t, testTD, tc.cert, nil, nil)
			cli := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "cli")), rev, nil)
			res := handshake(t, srv.ServerConfig(), cli.ClientConfig())
			wantErrIs(t, res.clientErr, tc.want)
			if res.serverErr == nil {
				t.Fatal("server completed a handshake the client refused")
			}
		})
	}
}

func TestClientConfigForUnexpectedPeer(t *testing.T) {
	ca := newRawCA(t, "cluster")
	srv := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "srv")), nil, nil)
	cli := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "cli")), nil, nil)
	res := handshake(t, srv.ServerConfig(), cli.ClientConfigFor(NodeID(testTD, "someone-else")))
	wantErrIs(t, res.clientErr, ErrUnexpectedPeer)
	res = handshake(t, srv.ServerConfig(), cli.ClientConfigFor(NodeID(testTD, "srv")))
	if res.clientErr != nil || res.serverErr != nil {
		t.Fatalf("expected peer refused: %v / %v", res.clientErr, res.serverErr)
	}
}

// TestCertificateRotatesWithoutNewConfig checks that one tls.Config picks up
// a rotated certificate on the next handshake.
func TestCertificateRotatesWithoutNewConfig(t *testing.T) {
	ca := newRawCA(t, "cluster")
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(ca.leaf(t, nodeSpec(testTD, "srv")))
	srv, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: testTD,
		Roots:       func() *x509.CertPool { return ca.pool },
		Certificate: func() (*tls.Certificate, error) { return cur.Load(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	cli := ca.source(t, testTD, ca.leaf(t, nodeSpec(testTD, "cli")), nil, nil)
	scfg, ccfg := srv.ServerConfig(), cli.ClientConfig()
	var seen []string
	for i := 0; i < 2; i++ {
		if i == 1 {
			cur.Store(ca.leaf(t, nodeSpec(testTD, "srv")))
		}
		var serial string
		ccfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, _ := x509.ParseCertificate(raw[0])
			serial = c.SerialNumber.String()
			return nil
		}
		if res := handshake(t, scfg, ccfg); res.clientErr != nil || res.serverErr != nil {
			t.Fatalf("handshake %d: %v / %v", i, res.clientErr, res.serverErr)
		}
		seen = append(seen, serial)
	}
	if seen[0] == seen[1] || seen[1] != cur.Load().Leaf.SerialNumber.String() {
		t.Fatalf("serials seen %v; rotation not picked up", seen)
	}
}

func TestTLSSourceConfigValidate(t *testing.T) {
	if _, err := NewTLSSource(TLSSourceConfig{}); err == nil || !strings.Contains(err.Error(), "TrustDomain") {
		t.Fatalf("err = %v, want one naming TrustDomain", err)
	}
	if _, err := NewTLSSource(TLSSourceConfig{TrustDomain: "x"}); err == nil || !strings.Contains(err.Error(), "Roots") {
		t.Fatalf("err = %v, want one naming Roots", err)
	}
	if _, err := VerifyPeer(nil, VerifyOptions{}); err != ErrNoPeerCertificate {
		t.Fatalf("empty chain: %v", err)
	}
}

// TestRootsReadAtEveryHandshake: a root added to the trust bundle (as in a
// root rotation) is honoured by the next handshake of the same config.
func TestRootsReadAtEveryHandshake(t *testing.T) {
	oldCA, newCA := newRawCA(t, "old"), newRawCA(t, "new")
	var roots atomic.Pointer[x509.CertPool]
	roots.Store(oldCA.pool)
	srvCert := oldCA.leaf(t, nodeSpec(testTD, "srv"))
	srv, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: testTD,
		Roots:       func() *x509.CertPool { return roots.Load() },
		Certificate: func() (*tls.Certificate, error) { return srvCert, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	both := x509.NewCertPool()
	both.AddCert(oldCA.root)
	both.AddCert(newCA.root)
	cli, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: testTD,
		Roots:       func() *x509.CertPool { return both },
		Certificate: func() (*tls.Certificate, error) { return newCA.leaf(t, nodeSpec(testTD, "cli")), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	scfg := srv.ServerConfig()
	wantErrIs(t, handshake(t, scfg, cli.ClientConfig()).serverErr, ErrUnknownAuthority)
	roots.Store(both)
	if res := handshake(t, scfg, cli.ClientConfig()); res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("after adding the new root: %v / %v", res.serverErr, res.clientErr)
	}
}
