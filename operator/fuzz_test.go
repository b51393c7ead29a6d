package operator

import (
	"bytes"
	"maps"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// The fuzz targets decode untrusted bytes and verify the result against the
// fixed bundle and records of the tests. None may panic, and none may
// accept anything that a real key did not sign: an accepted command's
// signed message, or an accepted record's bytes, must be one the test
// signed itself.

// FuzzSignedCommand decodes a SignedCommand and verifies it for every
// role.
func FuzzSignedCommand(f *testing.F) {
	records := testRecords(f)
	lookup := lookupIn(f, records, t0)
	signed := map[string]bool{}
	for _, op := range []string{"bob", "carol", "alice", "root"} {
		sc, err := SignCommand(op, testKey(op), testCluster, setPolicy, policyReq("summarize"), t0, time.Minute, bytes.Repeat([]byte{1}, NonceSize))
		if err != nil {
			f.Fatal(err)
		}
		signed[string(CommandMessage(sc))] = true
		f.Add(mustMarshal(f, sc))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := DecodeSignedCommand(b)
		if err != nil {
			return
		}
		NonceKey(sc)
		for _, role := range append(Roles(), "") {
			if VerifyCommand(sc, testCluster, setPolicy, policyReq("summarize"), t0, lookup, role) != nil {
				continue
			}
			if !signed[string(CommandMessage(sc))] {
				t.Fatalf("accepted a command no test key signed: %v", sc)
			}
		}
	})
}

// FuzzSignedRecord decodes a SignedOperatorRecord, stores it under its
// name (or "fuzz" when it does not decode) beside the test records, and
// verifies every operator's chain and the record as an update.
func FuzzSignedRecord(f *testing.F) {
	bundle := testBundle(f)
	signed := map[string]bool{}
	add := func(sr *meshnodev1.SignedOperatorRecord) {
		signed[string(sr.GetRecord())] = true
		f.Add(mustMarshal(f, sr))
	}
	base := testRecords(f)
	for _, sr := range base {
		signed[string(sr.GetRecord())] = true
	}
	add(sign(f, "alice", rec("dave", RoleAdmin)))
	add(sign(f, "root", rec("root", RoleAdmin)))
	add(sign(f, "dave", rec("erin", RoleViewer)))
	add(sign(f, "bob", rec("alice", RoleAdmin)))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs := maps.Clone(base)
		name := "fuzz"
		sr := &meshnodev1.SignedOperatorRecord{}
		if proto.Unmarshal(b, sr) != nil {
			return
		}
		if _, rec, err := DecodeSignedRecord(b); err == nil {
			name = rec.GetName()
		}
		rs[name] = sr
		for _, n := range []string{"root", "alice", "bob", "carol", "dave", "erin", name} {
			got, err := VerifyChain(bundle, rs, n, t0)
			if err != nil {
				continue
			}
			if n == "root" && rs["root"] == nil {
				continue // implied by the bundle
			}
			if !signed[string(rs[n].GetRecord())] || !proto.Equal(got, mustOpen(t, rs[n])) {
				t.Fatalf("VerifyChain(%s) accepted a record no test key signed: %v", n, got)
			}
		}
		if _, err := VerifyUpdate(bundle, base, sr, t0); err == nil && !signed[string(sr.GetRecord())] {
			t.Fatalf("VerifyUpdate accepted a record no test key signed")
		}
	})
}

// FuzzTrustBundle decodes a TrustBundle, and builds another from the real
// roots and a fuzzed first admin name and key (most random bundles hold no
// certificate that parses), and verifies the test records against each: an
// operator other than the bundle's first admin verifies only if the bundle
// carries the real first admin's key.
func FuzzTrustBundle(f *testing.F) {
	f.Add(mustMarshal(f, testBundle(f)), "root", []byte(testPub("root")))
	f.Add([]byte{}, "root", []byte(testPub("mallory")))
	f.Add([]byte{}, "alice", []byte(testPub("alice")))
	rs := testRecords(f)
	f.Fuzz(func(t *testing.T, b []byte, name string, key []byte) {
		bundles := []*meshnodev1.TrustBundle{{Roots: [][]byte{testRootDER(t)}, FirstAdminName: name, FirstAdminPublicKey: key}}
		if decoded, err := DecodeTrustBundle(b); err == nil {
			bundles = append(bundles, decoded)
		}
		for _, bundle := range bundles {
			for _, n := range []string{"root", "alice", "bob", "carol"} {
				if _, err := VerifyChain(bundle, rs, n, t0); err != nil || n == bundle.GetFirstAdminName() {
					continue
				}
				if bundle.GetFirstAdminName() != "root" || !bytes.Equal(bundle.GetFirstAdminPublicKey(), testPub("root")) {
					t.Fatalf("%s verified against a bundle whose first admin is %q, key %x", n, bundle.GetFirstAdminName(), bundle.GetFirstAdminPublicKey())
				}
			}
		}
	})
}

// FuzzKeyPEM parses untrusted PEM as a private and as a public key.
func FuzzKeyPEM(f *testing.F) {
	priv, _ := MarshalPrivateKey(testKey("bob"))
	pub, _ := MarshalPublicKey(testPub("bob"))
	f.Add(priv)
	f.Add(pub)
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParsePrivateKey(b); err == nil && len(k) != 64 {
			t.Fatalf("private key of %d bytes", len(k))
		}
		if k, err := ParsePublicKey(b); err == nil && len(k) != 32 {
			t.Fatalf("public key of %d bytes", len(k))
		}
	})
}

func mustOpen(t *testing.T, sr *meshnodev1.SignedOperatorRecord) *meshnodev1.OperatorRecord {
	rec, err := OpenRecord(sr)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
