// Command testagent is the agent the end-to-end tests attach to meshnode
// processes. It is built with the Go SDK, like a real agent.
//
//	testagent serve --socket S --name N --capability echo [--vote | --abstain]
//	testagent load  --socket S --capability echo --duration 20s --concurrency 4
//
// serve registers one capability whose handler echoes the payload, and with
// --vote approves every quorum proposal, --abstain never answers one; it runs until SIGTERM or SIGINT.
// load calls the capability in a loop for --duration (or until --calls
// calls were made, or a signal) and prints one JSON object with its counts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testagent serve|load [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "load":
		err = load(ctx, os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown mode %q: use serve or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	socket := fs.String("socket", "", "node socket")
	name := fs.String("name", "testagent", "agent name")
	capability := fs.String("capability", "echo", "capability served")
	vote := fs.Bool("vote", false, "approve every quorum proposal")
	abstain := fs.Bool("abstain", false, "register as a voter and never answer a vote request")
	delay := fs.Duration("delay", 0, "time each call takes (with --stream: between chunks)")
	chunks := fs.Int("stream", 0, "serve the capability as a stream of this many chunks (\"<payload> <i>\\n\")")
	steps := fs.Int("task", 0, "serve the capability as a task of this many artifacts (\"step-<i>\": \"<payload> <i>\"), delay apart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := &agent.Agent{
		Name:   *name,
		Socket: *socket,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// Reconnect quickly: the tests restart nodes under this agent.
		ReconnectBackoff: agent.Backoff{Initial: 50 * time.Millisecond, Max: time.Second},
	}
	if *abstain {
		a.Roles = []string{"voter"}
		a.HandleVote("", func(ctx context.Context, _ *meshnodev1.Proposal) (agent.Choice, string, error) {
			<-ctx.Done()
			return 0, "", ctx.Err()
		})
	}
	if *vote {
		a.Roles = []string{"voter"}
		a.HandleVote("", func(context.Context, *meshnodev1.Proposal) (agent.Choice, string, error) {
			return agent.Approve, "testagent approves", nil
		})
	}
	if *steps > 0 {
		a.HandleTask(agent.Capability{Name: *capability}, taskSteps(*steps, *delay))
	} else if *chunks > 0 {
		a.HandleStream(agent.Capability{Name: *capability}, streamChunks(*chunks, *delay))
	} else {
		a.Handle(agent.Capability{Name: *capability}, func(ctx context.Context, r *agent.Request) (*agent.Response, error) {
			if *delay > 0 {
				select {
				case <-time.After(*delay):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return &agent.Response{Payload: r.Payload, Metadata: map[string]string{"served-by": a.ID()}}, nil
		})
	}
	go func() {
		if err := a.Up(ctx); err == nil {
			fmt.Fprintf(os.Stderr, "testagent: %s up\n", a.ID())
		}
	}()
	err := a.Serve(ctx)
	a.Close()
	return err
}

// streamChunks answers with n chunks, "<payload> <i>\n", delay apart.
func streamChunks(n int, delay time.Duration) agent.StreamHandlerFunc {
	return func(ctx context.Context, r *agent.Request, send func([]byte) error) error {
		for i := 1; i <= n; i++ {
			if i > 1 && delay > 0 {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := send(fmt.Appendf(nil, "%s %d\n", r.Payload, i)); err != nil {
				return err
			}
		}
		return nil
	}
}

// taskSteps runs a task of n artifacts, delay apart.
func taskSteps(n int, delay time.Duration) agent.TaskHandlerFunc {
	return func(ctx context.Context, r *agent.Request, t *agent.Task) error {
		return streamChunks(n, delay)(ctx, r, func(chunk []byte) error {
			var i int
			fmt.Sscanf(string(chunk[len(r.Payload):]), " %d", &i)
			return t.Artifact(fmt.Sprintf("step-%d", i), chunk[:len(chunk)-1])
		})
	}
}

// Counts is what load prints: the e2e tests decode it.
type Counts struct {
	OK       int64            `json:"ok"`
	Errors   int64            `json:"errors"`
	ByAgent  map[string]int64 `json:"by_agent"`
	ErrorMsg []string         `json:"error_samples,omitempty"`
	Seconds  float64          `json:"seconds"`
	// FirstErrorMs and LastErrorMs are Unix milliseconds of the first and
	// last failed call (0: none), so a test can tell how long failures
	// lasted after a fault.
	FirstErrorMs int64 `json:"first_error_ms"`
	LastErrorMs  int64 `json:"last_error_ms"`
	// Final marks the last line; earlier lines are progress reports.
	Final bool `json:"final"`
}

func load(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	socket := fs.String("socket", "", "node socket")
	capability := fs.String("capability", "echo", "capability called")
	duration := fs.Duration("duration", 10*time.Second, "how long to call")
	calls := fs.Int64("calls", 0, "stop after this many calls (0: no limit)")
	concurrency := fs.Int("concurrency", 4, "callers at once")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of one call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := agent.Dial(dctx, *socket)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	counts := Run(ctx, c, *capability, *duration, *calls, *concurrency, *timeout, out)
	counts.Final = true
	return json.NewEncoder(out).Encode(counts)
}

// Run calls capability from concurrency goroutines until duration passes,
// limit calls were made (0: no limit) or ctx ends. Every progressEvery it
// writes the counts so far to progress, one JSON line each.
func Run(ctx context.Context, c *agent.Client, capability string, duration time.Duration, limit int64, concurrency int, timeout time.Duration, progress io.Writer) Counts {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	start := time.Now()
	var (
		mu      sync.Mutex
		counts  = Counts{ByAgent: map[string]int64{}}
		started atomic.Int64
		wg      sync.WaitGroup
	)
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := started.Add(1)
				if limit > 0 && n > limit {
					return
				}
				cctx, ccancel := context.WithTimeout(context.Background(), timeout)
				payload := []byte(strconv.FormatInt(n, 10))
				res, err := c.Call(cctx, capability, payload, agent.WithIdempotencyKey("load-"+strconv.FormatInt(n, 10)))
				ccancel()
				mu.Lock()
				switch {
				case err == nil && string(res.Payload) != string(payload):
					counts.Errors++
					counts.sample(fmt.Errorf("call %d: answer %q, want the payload back", n, res.Payload))
				case err == nil:
					counts.OK++
					counts.ByAgent[res.AgentID]++
				default:
					counts.Errors++
					counts.sample(err)
				}
				mu.Unlock()
				if err != nil {
					// A node that is down refuses at once: do not spin.
					time.Sleep(errorPause)
				}
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		enc := json.NewEncoder(progress)
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				mu.Lock()
				snap := counts
				snap.ByAgent = maps.Clone(counts.ByAgent)
				snap.ErrorMsg = nil
				snap.Seconds = time.Since(start).Seconds()
				mu.Unlock()
				enc.Encode(snap)
			}
		}
	})
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	counts.Seconds = time.Since(start).Seconds()
	sort.Strings(counts.ErrorMsg)
	return counts
}

// errorPause is how long a caller waits after a failed call.
const errorPause = 20 * time.Millisecond

// progressEvery is how often load reports its counts while it runs.
const progressEvery = 250 * time.Millisecond

func (c *Counts) sample(err error) {
	now := time.Now().UnixMilli()
	if c.FirstErrorMs == 0 {
		c.FirstErrorMs = now
	}
	c.LastErrorMs = now
	if len(c.ErrorMsg) < 10 && !errors.Is(err, context.Canceled) {
		c.ErrorMsg = append(c.ErrorMsg, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
	}
}
