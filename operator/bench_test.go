package operator

import (
	"crypto/ed25519"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkVerifyCommand measures VerifyCommand with a direct record
// lookup (the state machine's cost per admin command, the chain walk
// aside) and reports it against ed25519.Verify alone, timed in the same
// run: x_ed25519 is the ratio.
func BenchmarkVerifyCommand(b *testing.B) {
	record := rec("bob", RolePolicy)
	benchVerify(b, func(string) (*meshnodev1.OperatorRecord, error) { return record, nil })
}

// BenchmarkVerifyCommandChain adds the chain walk (bob signed by alice
// signed by the first admin): two record signatures besides the command's.
func BenchmarkVerifyCommandChain(b *testing.B) {
	benchVerify(b, lookupIn(b, testRecords(b), t0))
}

func benchVerify(b *testing.B, lookup Lookup) {
	sc := signedPolicy(b)
	req := policyReq("summarize")
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := VerifyCommand(sc, testCluster, setPolicy, req, t0, lookup, RolePolicy); err != nil {
			b.Fatal(err)
		}
		n++
	}
	perOp := time.Since(start) / time.Duration(n)
	b.ReportMetric(float64(perOp)/float64(ed25519Baseline(b, n)), "x_ed25519")
}

// BenchmarkEd25519Verify is the baseline on its own.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, msg, sig := baselineInput(b)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("baseline signature does not verify")
		}
	}
}

func baselineInput(b *testing.B) (ed25519.PublicKey, []byte, []byte) {
	sc := signedPolicy(b)
	msg := CommandMessage(sc)
	return testPub("bob"), msg, sc.GetSignature()
}

// ed25519Baseline times n (at least 1000) verifications of a command-sized
// message, with the benchmark timer stopped, and returns the time of one.
func ed25519Baseline(b *testing.B, n int) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	n = max(n, 1000)
	pub, msg, sig := baselineInput(b)
	start := time.Now()
	for range n {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("baseline signature does not verify")
		}
	}
	return time.Since(start) / time.Duration(n)
}
