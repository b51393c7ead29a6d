package transport_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/faultconn"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

func faultyEndpoint(t *testing.T, name string, seed uint64) (*transport.Endpoint, *faultconn.Conn) {
	fc, err := faultconn.Listen("127.0.0.1:0", faultconn.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	e := transporttest.NewEndpointConfig(t, name, transport.Config{PacketConn: fc})
	e.Handle("echo", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) { return req, nil })
	return e, fc
}

func TestRPCUnderLossAndPartition(t *testing.T) {
	a, fa := faultyEndpoint(t, "a", 1)
	b, fb := faultyEndpoint(t, "b", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Call(ctx, b.Addr().String(), "echo", []byte("warm")); err != nil {
		t.Fatal(err)
	}
	fa.SetDropRate(0.2)
	fb.SetDropRate(0.2)
	for i := range 30 {
		if resp, err := a.Call(ctx, b.Addr().String(), "echo", []byte{byte(i)}); err != nil || resp[0] != byte(i) {
			t.Fatalf("call %d under 20%% loss: %v", i, err)
		}
	}
	fa.SetDropRate(0)
	fb.SetDropRate(0)

	fa.Partition(b.Addr().String())
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := a.Call(short, b.Addr().String(), "echo", nil)
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call across a partition: %v, want DeadlineExceeded", err)
	}
	fa.Heal()
	if _, err := a.Call(ctx, b.Addr().String(), "echo", []byte("back")); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	if fa.Stats().Partitioned == 0 || fa.Stats().Dropped == 0 {
		t.Fatalf("faults not exercised: %+v", fa.Stats())
	}
}
