package agent_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func ExampleAgent_Serve() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	a := &agent.Agent{Name: "shouter"}
	a.Handle(agent.Capability{Name: "text.upper", Proficiency: agent.Expert, MaxConcurrency: 8},
		func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
			if len(r.Payload) == 0 {
				return nil, agent.Errorf(codes.InvalidArgument, "empty text")
			}
			return &agent.Response{Payload: []byte(strings.ToUpper(string(r.Payload)))}, nil
		})
	if err := a.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}

func ExampleAgent_HandleVote() {
	a := &agent.Agent{Name: "reviewer", KeyFile: "/var/lib/reviewer/vote.key", Roles: []string{"voter"}}
	a.Handle(agent.Capability{Name: "payment.review"}, func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		return &agent.Response{Payload: []byte(`{"ok":true}`)}, nil
	})
	a.HandleVote("payment.approve", func(ctx context.Context, p *meshnodev1.Proposal) (agent.Choice, string, error) {
		if len(p.GetPayload()) > 1024 {
			return agent.Reject, "payload too large to review", nil
		}
		return agent.Approve, "looks fine", nil
	})
	_ = a.Serve(context.Background())
}

func ExampleClient_Call() {
	ctx := context.Background()
	c, err := agent.Dial(ctx, "") // $MESHNODE_SOCKET or the node's default socket
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // the call's deadline
	defer cancel()
	res, err := c.Call(ctx, "text.upper", []byte("hello"), agent.WithIdempotencyKey("greeting-1"))
	switch status.Code(err) {
	case codes.OK:
		fmt.Printf("%s (answered by %s on %s)\n", res.Payload, res.AgentID, res.Node)
	case codes.NotFound:
		fmt.Println("no agent offers text.upper")
	default:
		log.Fatal(err)
	}
}

func ExampleClient_Watch() {
	ctx := context.Background()
	c, err := agent.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for ev, err := range c.Watch(ctx, "text.upper") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.GetType(), ev.GetAgent().GetId())
	}
}
