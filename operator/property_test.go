package operator

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

func randKey(r *rand.Rand) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(r.UintN(256))
	}
	return ed25519.NewKeyFromSeed(seed)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// TestPropertyVerifyCommand: for random commands signed with random keys,
// verification succeeds if and only if key, cluster, method, body, time and
// role all match.
func TestPropertyVerifyCommand(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 18))
	const (
		dimKey = 1 << iota
		dimCluster
		dimMethod
		dimBody
		dimTime
		dimRole
		dims = iota
	)
	accepted, refused := 0, 0
	for i := range 600 {
		key := randKey(r)
		name := fmt.Sprintf("op%d", r.UintN(1000))
		// A random proper subset of the roles, so some role is missing.
		all := Roles()
		r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		held := all[:r.IntN(len(all))]
		missing := all[len(held)]
		record := &meshnodev1.OperatorRecord{Name: name, PublicKey: key.Public().(ed25519.PublicKey), Issuer: "root"}
		for _, role := range held {
			record.Roles = append(record.Roles, string(role))
		}
		cluster := randBytes(r, 1+r.IntN(32))
		method := fmt.Sprintf("meshnode.v1.Svc%d/M%d", r.IntN(5), r.IntN(5))
		req := policyReq(fmt.Sprintf("cap-%d", r.Uint64()))
		issued := time.Unix(0, r.Int64N(1<<62))
		ttl := time.Duration(1 + r.Int64N(int64(MaxCommandTTL)))

		signKey := key
		mask := 0
		for d := range dims {
			if r.IntN(4) == 0 {
				mask |= 1 << d
			}
		}
		if len(held) == 0 {
			mask |= dimRole // nothing to need that is held
		}
		if mask&dimKey != 0 {
			signKey = randKey(r)
		}
		sc, err := SignCommand(name, signKey, cluster, method, req, issued, ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		vCluster, vMethod, vReq := cluster, method, proto.Message(req)
		now := issued.Add(time.Duration(r.Int64N(int64(ttl))))
		var need Role
		if len(held) > 0 {
			need = held[r.IntN(len(held))]
		}
		if mask&dimCluster != 0 {
			vCluster = append(append([]byte{}, cluster...), 0)
		}
		if mask&dimMethod != 0 {
			vMethod = method + "x"
		}
		if mask&dimBody != 0 {
			vReq = policyReq(req.GetPolicy().GetCapability() + "x")
		}
		if mask&dimTime != 0 {
			if r.IntN(2) == 0 {
				now = issued.Add(ttl + time.Duration(r.Int64N(int64(time.Hour))))
			} else {
				now = issued.Add(-ClockSkew - 1 - time.Duration(r.Int64N(int64(time.Hour))))
			}
		}
		if mask&dimRole != 0 {
			need = missing
		}
		lookup := func(n string) (*meshnodev1.OperatorRecord, error) {
			if n != name {
				return nil, fmt.Errorf("operator %q: %w", n, ErrUnknownOperator)
			}
			return record, nil
		}
		err = VerifyCommand(sc, vCluster, vMethod, vReq, now, lookup, need)
		if (err == nil) != (mask == 0) {
			t.Fatalf("case %d: mismatch mask %06b: VerifyCommand = %v", i, mask, err)
		}
		if err == nil {
			accepted++
		} else {
			refused++
		}
	}
	if accepted < 50 || refused < 50 {
		t.Fatalf("unbalanced cases: %d accepted, %d refused", accepted, refused)
	}
}

// TestPropertyVerifyChain checks VerifyChain against a direct reference
// implementation over random record sets: random issuers (loops
// included), roles, validity and signatures by the wrong key.
func TestPropertyVerifyChain(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 18))
	names := []string{"root", "n0", "n1", "n2", "n3", "n4", "n5", "n6"}
	type model struct {
		issuer        string
		admin, valid  bool
		goodSignature bool
		presentAtAll  bool
	}
	bundle := testBundle(t)
	outcomes := map[bool]int{}
	for i := range 400 {
		m := map[string]model{}
		rs := Records{}
		for _, n := range names {
			md := model{
				issuer:        names[r.IntN(len(names))],
				admin:         r.IntN(10) < 6,
				valid:         r.IntN(100) < 85,
				goodSignature: r.IntN(100) < 90,
				presentAtAll:  r.IntN(10) < 8,
			}
			if n == "root" {
				md.issuer = "root"
				md.presentAtAll = r.IntN(10) < 3
				md.admin = r.IntN(10) < 8
			}
			if !md.presentAtAll {
				continue
			}
			m[n] = md
			rc := rec(n)
			if md.admin {
				rc.Roles = []string{string(RoleAdmin)}
			}
			if !md.valid {
				rc.NotAfterUnixNano = t0.Add(-time.Second).UnixNano()
			}
			signer := testKey(md.issuer)
			if !md.goodSignature {
				signer = testKey("mallory")
			}
			sr, err := SignRecord(md.issuer, signer, rc)
			if err != nil {
				t.Fatal(err)
			}
			rs[n] = sr
		}
		// The reference: walk issuers; every record on the way present
		// (or the implied first admin), valid, well signed, and every
		// issuer an admin; no name twice.
		ref := func(name string) bool {
			seen := map[string]bool{}
			for cur := name; ; {
				if seen[cur] {
					return false
				}
				seen[cur] = true
				md, ok := m[cur]
				if !ok {
					return cur == "root"
				}
				if !md.valid || !md.goodSignature {
					return false
				}
				if cur == "root" {
					return true
				}
				if is, ok := m[md.issuer]; ok && !is.admin {
					return false
				}
				cur = md.issuer
			}
		}
		for _, n := range names {
			_, err := VerifyChain(bundle, rs, n, t0)
			want := ref(n)
			if (err == nil) != want {
				t.Fatalf("case %d: VerifyChain(%s) = %v, reference says valid=%v; model %+v", i, n, err, want, m)
			}
			outcomes[want]++
		}
	}
	if outcomes[true] < 100 || outcomes[false] < 100 {
		t.Fatalf("unbalanced cases: %v", outcomes)
	}
}
