package operator

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// t0 is the fixed time of every test: the package has no clock.
var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// testKey returns a deterministic key for name, so failures reproduce.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("operator test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func testPub(name string) ed25519.PublicKey {
	return testKey(name).Public().(ed25519.PublicKey)
}

var (
	rootOnce sync.Once
	rootDER  []byte
)

// testRootDER returns a self-signed CA certificate, made once.
func testRootDER(t testing.TB) []byte {
	rootOnce.Do(func() {
		k := testKey("ca")
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "meshnode test root"},
			NotBefore:             t0.Add(-time.Hour),
			NotAfter:              t0.Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k)
		if err != nil {
			panic(err)
		}
		rootDER = der
	})
	return rootDER
}

// testBundle anchors the tests' chains at the first admin "root".
func testBundle(t testing.TB) *meshnodev1.TrustBundle {
	return &meshnodev1.TrustBundle{
		Roots:               [][]byte{testRootDER(t)},
		FirstAdminName:      "root",
		FirstAdminPublicKey: testPub("root"),
	}
}

// rec builds a record for name (key testKey(name)), valid an hour either
// side of t0, version 1.
func rec(name string, roles ...Role) *meshnodev1.OperatorRecord {
	r := &meshnodev1.OperatorRecord{
		Name:              name,
		PublicKey:         testPub(name),
		NotBeforeUnixNano: t0.Add(-time.Hour).UnixNano(),
		NotAfterUnixNano:  t0.Add(time.Hour).UnixNano(),
		Version:           1,
	}
	for _, role := range roles {
		r.Roles = append(r.Roles, string(role))
	}
	return r
}

// sign signs r as issuer with testKey(issuer), failing the test on error.
func sign(t testing.TB, issuer string, r *meshnodev1.OperatorRecord) *meshnodev1.SignedOperatorRecord {
	t.Helper()
	sr, err := SignRecord(issuer, testKey(issuer), r)
	if err != nil {
		t.Fatalf("SignRecord(%s, %s): %v", issuer, r.GetName(), err)
	}
	return sr
}

// testRecords: admin "alice" (by root), "bob" with policy (by alice),
// "carol" with reviewer and viewer (by root).
func testRecords(t testing.TB) Records {
	return Records{
		"alice": sign(t, "root", rec("alice", RoleAdmin)),
		"bob":   sign(t, "alice", rec("bob", RolePolicy)),
		"carol": sign(t, "root", rec("carol", RoleReviewer, RoleViewer)),
	}
}

// lookupIn resolves operators through VerifyChain at the given time, as
// the state machine does.
func lookupIn(t testing.TB, records Records, at time.Time) Lookup {
	b := testBundle(t)
	return func(name string) (*meshnodev1.OperatorRecord, error) {
		return VerifyChain(b, records, name, at)
	}
}

func ed25519Sign(name string, msg []byte) []byte {
	return ed25519.Sign(testKey(name), msg)
}
