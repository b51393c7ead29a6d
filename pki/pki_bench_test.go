package pki

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"go.step.sm/crypto/keyutil"
)

// BenchmarkVerifyPeer measures the per-handshake check against its
// baseline, crypto/x509's chain verification alone (what VerifyPeer adds:
// usage, SPIFFE id, trust domain and revocation checks).
func BenchmarkVerifyPeer(b *testing.B) {
	ca, store, _ := bootstrapServer(b, testTD, "srv")
	creds, err := ca.IssueLocal(context.Background(), "peer")
	if err != nil {
		b.Fatal(err)
	}
	chain := append(append([]*x509.Certificate(nil), creds.Chain...), creds.Roots[0])
	opts := VerifyOptions{TrustDomain: testTD, Roots: creds.RootPool(), Usage: x509.ExtKeyUsageClientAuth, Revocations: store}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	const n = 2000
	start := time.Now()
	for range n {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: opts.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Since(start) / n
	b.ResetTimer()
	for b.Loop() {
		if _, err := VerifyPeer(chain, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per.Nanoseconds())/1e3, "verify-us")
	b.ReportMetric(float64(base.Nanoseconds())/1e3, "baseline-x509-us")
	b.ReportMetric(float64(per)/float64(base), "ratio")
}

// BenchmarkHandshake measures a full mutual TLS 1.3 handshake over loopback
// TCP with TLSSource's verification, against the same handshake with
// certificate verification switched off (baseline).
func BenchmarkHandshake(b *testing.B) {
	ca, store, srv := bootstrapServer(b, testTD, "srv")
	creds, err := ca.IssueLocal(context.Background(), "cli")
	if err != nil {
		b.Fatal(err)
	}
	cli := newTestNode(b, testTD, "cli", "", creds, store)
	noVerify := func(c *tls.Certificate, server bool) *tls.Config {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*c}, InsecureSkipVerify: true}
		if server {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		return cfg
	}
	srvCert, _ := srv.keeper.Certificate()
	bs, bc := noVerify(srvCert, true), noVerify(cli.keeper.Current().TLSCertificate(), false)
	ss, cc := srv.tls.ServerConfig(), cli.tls.ClientConfig()
	for range 5 { // warm up both paths so neither pays first-use costs
		handshake(b, bs, bc)
		handshake(b, ss, cc)
	}
	// Interleaved, so that load from other processes hits both alike.
	var base, ours time.Duration
	for b.Loop() {
		t0 := time.Now()
		if r := handshake(b, bs, bc); r.serverErr != nil || r.clientErr != nil {
			b.Fatal(r.serverErr, r.clientErr)
		}
		t1 := time.Now()
		if r := handshake(b, ss, cc); r.serverErr != nil || r.clientErr != nil {
			b.Fatal(r.serverErr, r.clientErr)
		}
		base, ours = base+t1.Sub(t0), ours+time.Since(t1)
	}
	b.ReportMetric(float64(ours.Microseconds())/float64(b.N), "handshake-us")
	b.ReportMetric(float64(base.Microseconds())/float64(b.N), "baseline-noverify-us")
	b.ReportMetric(float64(ours)/float64(base), "ratio")
}

// BenchmarkJoin measures server-side join (token check, CSR check, one-time
// use, issuance) against the baseline of signing the same certificate with
// crypto/x509 directly.
func BenchmarkJoin(b *testing.B) {
	ca, _, _ := bootstrapServer(b, testTD, "srv")
	ctx := context.Background()
	key, _ := keyutil.GenerateDefaultSigner()
	s := ca.signer()
	const n = 200
	start := time.Now()
	for range n {
		tmpl := &x509.Certificate{SerialNumber: nextSerial(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			URIs: []*url.URL{NodeID(testTD, "x").URL()}, KeyUsage: x509.KeyUsageDigitalSignature}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, s.chain[0], key.Public(), s.key); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Since(start) / n
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		raw, err := ca.CreateToken(ctx, TokenRequest{})
		if err != nil {
			b.Fatal(err)
		}
		req, err := NewJoinRequest(raw, "n1", key)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := ca.Join(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds()), "join-us")
	b.ReportMetric(float64(base.Microseconds()), "baseline-sign-us")
	b.ReportMetric(float64(per)/float64(base), "ratio")
}
