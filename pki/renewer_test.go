package pki

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestRenewTime(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(24 * time.Hour)
	if got := RenewTime(nb, na, 0); !got.Equal(nb.Add(16 * time.Hour)) {
		t.Fatalf("RenewTime = %v, want 2/3 of the lifetime", got)
	}
	if got := RenewTime(nb, na, -0.05); !got.Equal(nb.Add(16*time.Hour - 72*time.Minute)) {
		t.Fatalf("RenewTime with jitter = %v", got)
	}
}

func TestRenewerConfigValidate(t *testing.T) {
	ok := RenewerConfig{
		Current:  func() *Credentials { return nil },
		Renew:    func(context.Context, *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) { return nil, nil },
		OnRotate: func(*Credentials) error { return nil },
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.Jitter = 0.9
	if err := bad.Validate(); err == nil {
		t.Fatal("Jitter 0.9 accepted")
	}
	bad = ok
	bad.MinBackoff, bad.MaxBackoff = time.Minute, time.Second
	if err := bad.Validate(); err == nil {
		t.Fatal("MinBackoff > MaxBackoff accepted")
	}
	bad = ok
	bad.Renew = nil
	if err := bad.Validate(); err == nil {
		t.Fatal("missing Renew accepted")
	}
}

// TestRenewalFiveMinuteLifetime runs 30 virtual minutes of a node whose
// certificates live 5 minutes, with the CA unreachable for 100 s (1/3 of
// the lifetime) right when a renewal is due: the node renews several times
// and never holds an expired certificate.
func TestRenewalFiveMinuteLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		store := NewMemStore()
		m, _, err := NewCAMaterial(testTD, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_ = store.SaveCA(ctx, m)
		ca, err := NewCA(ctx, CAConfig{TrustDomain: testTD, Store: store, CertLifetime: MinCertLifetime, Logger: slogDiscard()})
		if err != nil {
			t.Fatal(err)
		}
		creds, err := ca.IssueLocal(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		keeper := NewKeeper("", creds)
		var down atomic.Bool
		var rotations, failures atomic.Int32
		r, err := NewRenewer(RenewerConfig{
			Current: keeper.Current,
			Renew: func(ctx context.Context, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) {
				if down.Load() {
					failures.Add(1)
					return nil, errors.New("CA unreachable")
				}
				return ca.Renew(ctx, NodeID(testTD, "n1"), req)
			},
			OnRotate: func(c *Credentials) error { rotations.Add(1); return keeper.Rotate(c) },
			Logger:   slogDiscard(),
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		stopped := false
		defer func() { // on t.Fatal too: no goroutine may outlive the bubble
			if !stopped {
				cancel()
				<-done
			}
		}()

		first := creds.Leaf().SerialNumber
		// Once, just before a planned renewal, the CA goes away for 100 s:
		// 1/3 of the nominal 5-minute lifetime.
		var outageEnd time.Time
		for step := 0; step < 360; step++ { // 360 × 5 s = 30 min
			now := time.Now()
			switch {
			case outageEnd.IsZero() && rotations.Load() >= 1 && r.RenewAt().Sub(now) <= 5*time.Second:
				down.Store(true)
				outageEnd = now.Add(100 * time.Second)
			case down.Load() && !now.Before(outageEnd):
				down.Store(false)
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if _, err := keeper.Current().Check(testTD, time.Now()); err != nil {
				t.Fatalf("at +%ds the node's certificate is unusable: %v", (step+1)*5, err)
			}
			if step == 47 && keeper.Current().Leaf().SerialNumber.Cmp(first) == 0 {
				t.Fatal("not renewed by 4 min (2/3 of life)")
			}
		}
		if n := rotations.Load(); n < 6 {
			t.Fatalf("%d renewals in 30 min of 5-min certificates, want at least 6", n)
		}
		if outageEnd.IsZero() || failures.Load() < 2 {
			t.Fatalf("the outage (ended %v) met %d attempts; the test proves nothing about retries", outageEnd, failures.Load())
		}
		if !r.RenewAt().After(time.Now()) {
			t.Fatalf("RenewAt %v not in the future", r.RenewAt())
		}
		stopped = true
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	})
}
