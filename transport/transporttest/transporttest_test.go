package transporttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func TestEndpointsTalk(t *testing.T) {
	a := transporttest.NewEndpoint(t, "a")
	b := transporttest.NewEndpoint(t, "b")
	b.Handle("hi", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) {
		return []byte(p.ID.Node), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := a.Call(ctx, b.Addr().String(), "hi", nil)
	if err != nil || string(resp) != "a" {
		t.Fatalf("got %q, %v", resp, err)
	}
}
