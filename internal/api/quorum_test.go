package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport/transporttest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// singleServerStore is a one-server consensus store, bootstrapped.
func singleServerStore(t *testing.T) *consensus.Store {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := consensus.Config{Name: "n1", Server: true, Bootstrap: true, DataDir: t.TempDir(), Logger: log,
		HeartbeatTimeout: 400 * time.Millisecond, ElectionTimeout: 400 * time.Millisecond, LeaderLeaseTimeout: 200 * time.Millisecond}
	st, err := consensus.New(cfg, consensus.NetworkFromTransport(transporttest.NewEndpoint(t, "n1")))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestListDecisionsPagesAndFilters: newest first, every decision once across
// pages, status and kind filters, and a token this node did not issue is
// InvalidArgument.
func TestListDecisionsPagesAndFilters(t *testing.T) {
	st := singleServerStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kinds := []string{"payment.approve", "deploy"}
	for i := range 7 {
		// Decided records must carry a certificate the state machine
		// verifies; paging does not care, so these reached no quorum.
		d := &meshnodev1.Decision{Proposal: &meshnodev1.Proposal{Id: fmt.Sprintf("p%d", i), Kind: kinds[i%2]},
			Status: meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM}
		if i == 6 {
			d.Status = meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW
		}
		b, _ := proto.Marshal(d)
		if _, _, err := st.PutDecision(ctx, &meshnodev1.DecisionRecord{Id: d.GetProposal().GetId(), Status: consensus.DecisionStatusName(d.GetStatus()), Decision: b}); err != nil {
			t.Fatal(err)
		}
	}
	q := &quorumService{cfg: Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	list := func(req *meshnodev1.ListDecisionsRequest) []string {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			resp, err := q.ListDecisions(ctx, req)
			if err != nil {
				t.Fatalf("ListDecisions(%v): %v", req, err)
			}
			if pages > 10 || (req.GetPageSize() > 0 && len(resp.GetDecisions()) > int(req.GetPageSize())) {
				t.Fatalf("page %d of %d decisions for %v", pages, len(resp.GetDecisions()), req)
			}
			for _, d := range resp.GetDecisions() {
				if d.GetCommitIndex() == 0 {
					t.Fatalf("decision %s without its commit index", d.GetProposal().GetId())
				}
				ids = append(ids, d.GetProposal().GetId())
			}
			if resp.GetNextPageToken() == "" {
				return ids
			}
			req = proto.CloneOf(req)
			req.PageToken = resp.GetNextPageToken()
		}
	}
	for _, tc := range []struct {
		req  *meshnodev1.ListDecisionsRequest
		want string
	}{
		{&meshnodev1.ListDecisionsRequest{}, "[p6 p5 p4 p3 p2 p1 p0]"},
		{&meshnodev1.ListDecisionsRequest{PageSize: 2}, "[p6 p5 p4 p3 p2 p1 p0]"},
		{&meshnodev1.ListDecisionsRequest{PageSize: 5000}, "[p6 p5 p4 p3 p2 p1 p0]"},
		{&meshnodev1.ListDecisionsRequest{Kind: "deploy", PageSize: 1}, "[p5 p3 p1]"},
		{&meshnodev1.ListDecisionsRequest{Kind: "payment.approve", Status: meshnodev1.DecisionStatus_DECISION_STATUS_NO_QUORUM, PageSize: 2}, "[p4 p2 p0]"},
		{&meshnodev1.ListDecisionsRequest{Status: meshnodev1.DecisionStatus_DECISION_STATUS_NEEDS_REVIEW}, "[p6]"},
		{&meshnodev1.ListDecisionsRequest{Kind: "none"}, "[]"},
	} {
		if got := fmt.Sprint(list(tc.req)); got != tc.want {
			t.Errorf("ListDecisions(%v): %s, want %s", tc.req, got, tc.want)
		}
	}
	if _, err := q.ListDecisions(ctx, &meshnodev1.ListDecisionsRequest{PageToken: "forged"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a forged page token: %v, want InvalidArgument", err)
	}
}
