package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// BenchmarkAdminApply is the cost of judging an operator-signed admin
// command in the state machine (signature, chain to the bundle, digest,
// nonce) against applying a plain registration, both on a bare state in
// the same run: the verification an honest replica pays per admin command.
func BenchmarkAdminApply(b *testing.B) {
	ops := newTestOperators(b)
	now := time.Unix(0, testNow)
	const n = 2000
	signed := make([]*meshnodev1.Command, n)
	for i := range signed {
		req := setPolicy(fmt.Sprintf("cap%d", i), "cost")
		signed[i] = &meshnodev1.Command{Op: &meshnodev1.Command_Admin{Admin: adminSetPolicy(ops.sign(b, "root", MethodSetPolicy, req, now), req)}}
	}
	var plain, admin time.Duration
	for range b.N {
		st := testState(16)
		applyAs(st, 1, testOrigin, &meshnodev1.Command{Op: &meshnodev1.Command_PutTrustBundle{PutTrustBundle: &meshnodev1.PutTrustBundleCommand{Bundle: ops.bundle}}})
		t0 := time.Now()
		for i := range n {
			applyAs(st, uint64(2+i), testOrigin, agentCmd(fmt.Sprintf("srv/a%d", i), "x"))
		}
		plain += time.Since(t0)
		t0 = time.Now()
		for i, c := range signed {
			if r := applyAs(st, uint64(2+n+i), testOrigin, c)[0]; r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK {
				b.Fatalf("admin command %d: %v", i, r)
			}
		}
		admin += time.Since(t0)
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N*n) }
	b.ReportMetric(per(admin), "admin-apply-us")
	b.ReportMetric(per(plain), "plain-apply-us")
	b.ReportMetric(per(admin)/per(plain), "ratio")
}

// BenchmarkRegistryWritesWithAdmin is registry write throughput on 3
// servers with one admin command (a signed policy change) in every ten
// writes, against plain writes, alternating windows in the same run.
func BenchmarkRegistryWritesWithAdmin(b *testing.B) {
	const writers = 64
	for range b.N {
		c := newCluster(b, 3, 0, nil)
		l := c.leader()
		ops := newTestOperators(b)
		if _, err := l.store.PutTrustBundle(context.Background(), ops.bundle); err != nil {
			b.Fatal(err)
		}
		var plain, mixed throughput
		for round := range benchRounds {
			plain.add(runWriters(writers, func(ctx context.Context, w, i int) error {
				_, _, err := l.store.Apply(ctx, agentCmd(fmt.Sprintf("n1/p%d-%d-%d", w, round, i), "bench"))
				return err
			}))
			mixed.add(runWriters(writers, func(ctx context.Context, w, i int) error {
				if i%10 == 9 {
					req := setPolicy(fmt.Sprintf("c%d-%d-%d", w, round, i), "cost")
					_, err := l.store.Admin(ctx, adminSetPolicy(ops.sign(b, "root", MethodSetPolicy, req, time.Now()), req))
					return err
				}
				_, _, err := l.store.Apply(ctx, agentCmd(fmt.Sprintf("n1/m%d-%d-%d", w, round, i), "bench"))
				return err
			}))
		}
		c.close()
		b.ReportMetric(mixed.rate(), "mixed-writes/s")
		b.ReportMetric(plain.rate(), "plain-writes/s")
		b.ReportMetric(mixed.rate()/plain.rate(), "ratio")
		b.ReportMetric(pct(mixed.lat, 99), "mixed-p99-us")
		b.ReportMetric(pct(plain.lat, 99), "plain-p99-us")
	}
}
