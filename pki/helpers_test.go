package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// rawCA is a hand-rolled root+intermediate used by the TLS tests, so that
// they can mint certificates our CA would never issue (two SANs, wrong key
// usage, ...) and check the verifier refuses them.
type rawCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	pool              *x509.CertPool
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serialCounter = big.NewInt(1000)
var serialMu sync.Mutex

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialCounter = new(big.Int).Add(serialCounter, big.NewInt(1))
	return new(big.Int).Set(serialCounter)
}

func newRawCA(t testing.TB, name string) *rawCA {
	t.Helper()
	now := time.Now()
	rk, ik := newKey(t), newKey(t)
	rootT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name + " root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root := mustCreate(t, rootT, rootT, rk.Public(), rk)
	interT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name + " intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	inter := mustCreate(t, interT, root, ik.Public(), rk)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &rawCA{root: root, inter: inter, rootKey: rk, interKey: ik, pool: pool}
}

func mustCreate(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type leafSpec struct {
	uris      []string
	notBefore time.Time
	notAfter  time.Time
	ku        x509.KeyUsage
	eku       []x509.ExtKeyUsage
	isCA      bool
}

// nodeSpec is what our CA issues for node name in td.
func nodeSpec(td, name string) leafSpec {
	now := time.Now()
	return leafSpec{
		uris:      []string{NodeID(td, name).String()},
		notBefore: now.Add(-time.Minute), notAfter: now.Add(time.Hour),
		ku:  x509.KeyUsageDigitalSignature,
		eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

func (ca *rawCA) leaf(t testing.TB, s leafSpec) *tls.Certificate {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), NotBefore: s.notBefore, NotAfter: s.notAfter,
		KeyUsage: s.ku, ExtKeyUsage: s.eku, BasicConstraintsValid: true, IsCA: s.isCA,
	}
	for _, u := range s.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	leaf := mustCreate(t, tmpl, ca.inter, k.Public(), ca.interKey)
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.inter.Raw}, PrivateKey: k, Leaf: leaf}
}

func (ca *rawCA) source(t testing.TB, td string, cert *tls.Certificate, rev Revocations, log *slog.Logger) *TLSSource {
	t.Helper()
	s, err := NewTLSSource(TLSSourceConfig{
		TrustDomain: td,
		Roots:       func() *x509.CertPool { return ca.pool },
		Certificate: func() (*tls.Certificate, error) { return cert, nil },
		Revocations: rev,
		Logger:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshakeResult is what each side saw of one real TLS handshake.
type handshakeResult struct {
	serverErr, clientErr error
	serverSaw, clientSaw ID // peer identity each side saw on success
}

// handshake runs one real TLS 1.3 handshake over loopback TCP. The client
// reads one byte after its handshake so that a refusal by the server (which
// in TLS 1.3 happens after the client's Finished) surfaces on the client.
func handshake(t testing.TB, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if res.serverErr = tc.Handshake(); res.serverErr == nil {
			res.serverSaw, _ = PeerID(tc.ConnectionState())
			_, _ = tc.Write([]byte{1})
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	if res.clientErr = tc.Handshake(); res.clientErr == nil {
		res.clientSaw, _ = PeerID(tc.ConnectionState())
		var b [1]byte
		if _, err := io.ReadFull(tc, b[:]); err != nil {
			res.clientErr = err
		}
	}
	<-done
	return res
}

// logBuffer is a concurrency-safe log sink for asserting log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func wantErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %q", err, target)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
