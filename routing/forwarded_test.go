package routing

import (
	"strings"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// checkForwarded is the callee node's decode-and-check of a forwarded
// call's metadata under the default policy.
func checkForwarded(meta *meshnodev1.RoutingMetadata, target string, now time.Time) error {
	m, err := MetadataFromProto(meta)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return CheckForwarded(now, m, target, DefaultPolicy())
}

func TestCheckForwarded(t *testing.T) {
	now := time.Now()
	later := timestamppb.New(now.Add(time.Second))
	cases := []struct {
		name string
		meta *meshnodev1.RoutingMetadata
		want codes.Code
		text string
	}{
		{"ok", &meshnodev1.RoutingMetadata{Chain: []string{"n1/a", "n2/b"}, Hops: 1, Deadline: later}, codes.OK, ""},
		{"cycle", &meshnodev1.RoutingMetadata{Chain: []string{"n2/b", "n1/a", "n2/b"}, Hops: 2, Deadline: later}, codes.FailedPrecondition, "n2/b -> n1/a -> n2/b"},
		{"wrong target", &meshnodev1.RoutingMetadata{Chain: []string{"n1/a"}, Deadline: later}, codes.InvalidArgument, "end with"},
		{"empty chain", &meshnodev1.RoutingMetadata{Deadline: later}, codes.InvalidArgument, "chain"},
		{"hop limit", &meshnodev1.RoutingMetadata{Chain: []string{"n2/b"}, Hops: 9, Deadline: later}, codes.FailedPrecondition, "hop limit"},
		{"no deadline", &meshnodev1.RoutingMetadata{Chain: []string{"n2/b"}}, codes.InvalidArgument, "deadline"},
		{"deadline passed", &meshnodev1.RoutingMetadata{Chain: []string{"n2/b"}, Deadline: timestamppb.New(now.Add(-time.Millisecond))}, codes.DeadlineExceeded, "deadline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkForwarded(tc.meta, "n2/b", now)
			if status.Code(err) != tc.want || !strings.Contains(status.Convert(err).Message(), tc.text) {
				t.Fatalf("got %v, want %s mentioning %q", err, tc.want, tc.text)
			}
		})
	}
}

// FuzzForwardCallRequest feeds arbitrary peer bytes through the decoding
// and checks of a forwarded call: never a panic, and a request that passes
// the checks really ends its chain with its target.
func FuzzForwardCallRequest(f *testing.F) {
	good, _ := proto.Marshal(&meshnodev1.ForwardCallRequest{TargetAgentId: "n2/b", Delivery: &meshnodev1.Delivery{Payload: []byte("x")},
		Routing: &meshnodev1.RoutingMetadata{Chain: []string{"n1/a", "n2/b"}, Hops: 1, Deadline: timestamppb.New(time.Now().Add(time.Hour))}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &meshnodev1.ForwardCallRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		if err := checkForwarded(req.GetRouting(), req.GetTargetAgentId(), time.Now()); err == nil {
			chain := req.GetRouting().GetChain()
			if chain[len(chain)-1] != req.GetTargetAgentId() {
				t.Fatalf("accepted a chain %v that does not end with the target %q", chain, req.GetTargetAgentId())
			}
		}
	})
}
