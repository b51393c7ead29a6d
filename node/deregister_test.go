package node_test

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/node"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TestRegisterErrorsThroughTheSocket plays a real node: a deregister of an
// agent whose record is already gone answers NotFound (not Unavailable,
// which tells callers, and the node's own reaper, to retry forever), and a
// NaN cost is a bad request naming the field.
func TestRegisterErrorsThroughTheSocket(t *testing.T) {
	root, err := os.MkdirTemp("", "mnd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	tn := startTestNode(t, root, "n1", true, nil, "")
	reg := meshnodev1.NewRegistryServiceClient(tn.conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err = reg.Register(ctx, &meshnodev1.RegisterRequest{Name: "nan", Capabilities: []*meshnodev1.Capability{{Name: "x", Cost: math.NaN()}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "capabilities[0].cost") {
		t.Errorf("NaN cost: %v; want InvalidArgument naming capabilities[0].cost", err)
	}

	resp, err := reg.Register(ctx, &meshnodev1.RegisterRequest{Name: "gone", Capabilities: []*meshnodev1.Capability{{Name: "x", Cost: 1}}})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	id := resp.GetAgent().GetId()
	if err := node.DropAgentRecord(ctx, tn.Node, id); err != nil {
		t.Fatalf("drop record: %v", err)
	}
	for i := range 2 {
		_, err := reg.Deregister(ctx, &meshnodev1.DeregisterRequest{AgentId: id})
		if status.Code(err) != codes.NotFound {
			t.Errorf("deregister #%d of an agent already gone: %v; want NotFound", i+1, err)
		}
	}
}
