package gossip

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/agentmesh/meshnode/transport/transporttest"
)

// TestQUICDialStorm measures how long the transport's packet send takes when
// n endpoints all start talking to each other at once (memberlist's join
// pattern). Diagnostic only: set GOSSIP_DIAG=1.
func TestQUICDialStorm(t *testing.T) {
	if os.Getenv("GOSSIP_DIAG") == "" {
		t.Skip("diagnostic; set GOSSIP_DIAG=1")
	}
	const n = 20
	var ts []memberlist.NodeAwareTransport
	var addrs []string
	for i := range n {
		ep := transporttest.NewEndpoint(t, fmt.Sprintf("q%d", i))
		tr := ep.Memberlist()
		t.Cleanup(func() { tr.Shutdown() })
		go func() {
			for range tr.PacketCh() {
			}
		}()
		ts = append(ts, tr)
		addrs = append(addrs, ep.Addr().String())
	}
	var mu sync.Mutex
	var durs []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			wg.Go(func() {
				t0 := time.Now()
				_, err := ts[i].WriteTo([]byte("ping"), addrs[j])
				mu.Lock()
				durs = append(durs, time.Since(t0))
				if err != nil {
					errs++
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.Sort(durs)
	t.Logf("%d sends, %d errors; p50 %v p90 %v p99 %v max %v", len(durs), errs, durs[len(durs)/2], durs[len(durs)*9/10], durs[len(durs)*99/100], durs[len(durs)-1])
}
