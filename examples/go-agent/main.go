// Command go-agent is the meshnode Go SDK example: an agent that serves one
// capability by echoing its input in upper case and saying who answered,
// and a one-shot caller for any capability.
//
//	go-agent -name echo-1 -capability demo.echo            # serve until Ctrl-C
//	go-agent -call demo.echo -data '"hello"'               # call it, from any node
//	go-agent -name v1 -capability payment.review -vote approve   # also vote
//	go-agent -name g -stream demo.tokens                   # also stream words back
//
// The node's socket comes from -socket, else $MESHNODE_SOCKET, else the
// node's default path.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "go-agent:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// Answer is what the example capability returns, as JSON.
type Answer struct {
	Echo  string `json:"echo"`  // the request payload, upper-cased
	Agent string `json:"agent"` // the answering agent's id
	Node  string `json:"node"`  // the node it is attached to
	Lang  string `json:"lang"`  // "go"
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("go-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "go-echo", "agent name on its node")
	capability := fs.String("capability", "demo.echo", "capability to serve")
	socket := fs.String("socket", "", "node socket (default $MESHNODE_SOCKET or the node's default)")
	keyFile := fs.String("key-file", "", "vote key file (default: in memory)")
	vote := fs.String("vote", "", "also vote on every quorum proposal: approve, reject or abstain")
	stream := fs.String("stream", "", "also serve this capability as a stream: the JSON string payload, word by word")
	call := fs.String("call", "", "call this capability once instead of serving")
	data := fs.String("data", "", "payload for -call: a JSON value, @file, or - for stdin")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline for -call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *call != "" {
		return doCall(ctx, *socket, *call, *data, *timeout, stdin, stdout, stderr)
	}
	a := &agent.Agent{Name: *name, Socket: *socket, KeyFile: *keyFile, Logger: log}
	if *vote != "" {
		choice, ok := choices[*vote]
		if !ok {
			return fmt.Errorf("-vote %q: want approve, reject or abstain", *vote)
		}
		a.Roles = []string{"voter"}
		a.HandleVote("", func(ctx context.Context, p *meshnodev1.Proposal) (agent.Choice, string, error) {
			return choice, fmt.Sprintf("go-agent -vote %s on %d-byte payload", *vote, len(p.GetPayload())), nil
		})
	}
	if *stream != "" {
		a.HandleStream(agent.Capability{Name: *stream}, words)
	}
	return serve(ctx, a, *capability)
}

// words streams a JSON string payload back one word per chunk, a little
// apart, as a language model streams tokens. send waits while the caller
// is slow, and fails once the caller has gone: then the handler stops.
func words(ctx context.Context, r *agent.Request, send func([]byte) error) error {
	var text string
	if err := json.Unmarshal(r.Payload, &text); err != nil {
		return agent.Errorf(codes.InvalidArgument, "payload must be a JSON string: %v", err)
	}
	for i, w := range strings.Fields(text) {
		if i > 0 {
			w = " " + w
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send([]byte(w)); err != nil {
			return err
		}
	}
	return nil
}

var choices = map[string]agent.Choice{"approve": agent.Approve, "reject": agent.Reject, "abstain": agent.Abstain}

func serve(ctx context.Context, a *agent.Agent, capability string) error {
	defer a.Close()
	var node string // filled once the agent is up; read by the handler
	nodeKnown := make(chan struct{})
	a.Handle(agent.Capability{Name: capability, Proficiency: agent.Experienced}, func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
		select {
		case <-nodeKnown:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var text string
		if json.Unmarshal(r.Payload, &text) != nil {
			text = string(r.Payload) // not a JSON string: echo the raw bytes
		}
		out, err := json.Marshal(Answer{Echo: strings.ToUpper(text), Agent: a.ID(), Node: node, Lang: "go"})
		if err != nil {
			return nil, err
		}
		return &agent.Response{Payload: out, ContentType: "application/json"}, nil
	})

	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ctx) }()
	go func() {
		// Ask the node its name once it is reachable, for the answers.
		defer close(nodeKnown)
		if a.Up(ctx) != nil {
			return
		}
		if c, err := a.Client(); err == nil {
			if st, err := c.Status(ctx); err == nil {
				node = st.GetName()
			}
		}
	}()
	err := <-errc
	if err == nil {
		// Leave the registry now rather than after the node's grace period.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if derr := a.Deregister(dctx); derr != nil {
			fmt.Fprintln(os.Stderr, "go-agent: deregister:", derr)
		}
	}
	return err
}

func doCall(ctx context.Context, socket, capability, data string, timeout time.Duration, stdin io.Reader, stdout, stderr io.Writer) error {
	payload, err := readData(data, stdin)
	if err != nil {
		return err
	}
	c, err := agent.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.Call(ctx, capability, payload, agent.WithContentType("application/json"))
	if err != nil {
		return fmt.Errorf("%w (code %s)", err, status.Code(err))
	}
	fmt.Fprintf(stderr, "answered by %s on node %s (attempts: %d)\n", res.AgentID, res.Node, res.Attempts)
	_, err = fmt.Fprintf(stdout, "%s\n", res.Payload)
	return err
}

// readData turns the -data flag into bytes: "@path" reads a file, "-" reads
// stdin, anything else is used as is.
func readData(data string, stdin io.Reader) ([]byte, error) {
	switch {
	case data == "-":
		return io.ReadAll(stdin)
	case strings.HasPrefix(data, "@"):
		return os.ReadFile(data[1:])
	}
	return []byte(data), nil
}
