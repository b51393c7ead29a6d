package pki

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/protobuf/proto"
)

// fuzzCA is built once per process: fuzz workers call the target many times.
var fuzzCA = sync.OnceValues(func() (*CA, error) {
	store := NewMemStore()
	m, _, err := NewCAMaterial(testTD, time.Now())
	if err != nil {
		return nil, err
	}
	_ = store.SaveCA(context.Background(), m)
	return NewCA(context.Background(), CAConfig{TrustDomain: testTD, Store: store, Logger: slogDiscard()})
})

func fuzzSeedToken(f *testing.F) (*CA, string) {
	ca, err := fuzzCA()
	if err != nil {
		f.Fatal(err)
	}
	raw, err := ca.CreateToken(context.Background(), TokenRequest{Node: "n1", TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	return ca, raw
}

// FuzzParseToken: token parsing never panics, and whatever it accepts is
// well formed (a valid trust domain, a 32-byte fingerprint, a known role).
func FuzzParseToken(f *testing.F) {
	_, raw := fuzzSeedToken(f)
	f.Add(raw)
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Replace(raw, ".", "..", 1))
	f.Add(raw[:len(raw)/2])
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if ValidateTrustDomain(tok.TrustDomain) != nil || len(tok.RootFingerprint) != 32 || roleName(tok.Role) == "" || tok.ID == "" {
			t.Fatalf("accepted an ill-formed token: %+v", tok)
		}
	})
}

// FuzzJoin feeds arbitrary JoinRequest bytes (as they arrive off the join
// ALPN) to the CA. It must never panic, and must never issue a certificate
// except for the one valid token, for the identity the request names.
func FuzzJoin(f *testing.F) {
	ca, raw := fuzzSeedToken(f)
	key, _ := keyutil.GenerateDefaultSigner()
	req, err := NewJoinRequest(raw, "n1", key)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := proto.Marshal(req)
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var in meshnodev1.JoinRequest
		if proto.Unmarshal(b, &in) != nil {
			return
		}
		resp, err := ca.Join(context.Background(), &in)
		if err != nil {
			return
		}
		leaf, perr := x509.ParseCertificate(resp.Chain[0])
		if perr != nil {
			t.Fatal(perr)
		}
		id, _ := IDFromCert(leaf)
		if id != NodeID(testTD, in.NodeName) || in.NodeName != "n1" {
			t.Fatalf("issued %s for request naming %q", id, in.NodeName)
		}
	})
}

// FuzzParseCSR: CSR decoding never panics, and an accepted CSR names at
// most the requested identity.
func FuzzParseCSR(f *testing.F) {
	key, _ := keyutil.GenerateDefaultSigner()
	id := NodeID(testTD, "n1")
	der, err := NewCSR(id, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b, id)
		if err != nil {
			return
		}
		if len(csr.URIs) > 1 || len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
			t.Fatalf("accepted a CSR asking for extra SANs: %v", csr.URIs)
		}
	})
}

// FuzzCredentialsFromJoin: a joining node decodes the server's answer
// before trusting it; arbitrary answers never panic and are never accepted
// unless they are for the node's own key and identity.
func FuzzCredentialsFromJoin(f *testing.F) {
	ca, _ := fuzzSeedToken(f)
	// A name of its own: the CA is shared by the process, and a name is
	// claimed once.
	raw, err := ca.CreateToken(context.Background(), TokenRequest{Node: "creds", TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := ParseToken(raw)
	key, _ := keyutil.GenerateDefaultSigner()
	req, _ := NewJoinRequest(raw, "creds", key)
	resp, err := ca.Join(context.Background(), req)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := proto.Marshal(resp)
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r meshnodev1.JoinResponse
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		c, err := CredentialsFromJoin(tok, "n1", key, &r, time.Now())
		if err != nil {
			return
		}
		if id, _ := c.ID(); id != NodeID(testTD, "n1") {
			t.Fatalf("accepted credentials for %s", id)
		}
	})
}
