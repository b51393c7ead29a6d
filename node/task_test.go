package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmesh/meshnode/agent"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// taskAgent runs an SDK agent on tn serving one task capability.
func taskAgent(t *testing.T, tn *testNode, name, capability string, h func(*agent.Agent) agent.TaskHandlerFunc) {
	t.Helper()
	a := &agent.Agent{Name: name, Socket: tn.socket}
	a.HandleTask(agent.Capability{Name: capability}, h(a))
	runAgent(t, a)
}

// blocking serves a unary capability whose handler waits for its ctx to
// end and reports that it did.
func blocking(t *testing.T, tn *testNode, name, capability string, started chan<- string, ended chan<- string) {
	t.Helper()
	a := &agent.Agent{Name: name, Socket: tn.socket}
	a.Handle(agent.Capability{Name: capability}, func(ctx context.Context, _ *agent.Request) (*agent.Response, error) {
		started <- name
		<-ctx.Done()
		ended <- name
		return nil, ctx.Err()
	})
	runAgent(t, a)
}

// watchUntil collects a task's events after after until stop says so (then
// it disconnects) or the task's final event.
func watchUntil(t *testing.T, c *agent.Client, id string, after uint64, stop func(*meshnodev1.TaskEvent) bool) []*meshnodev1.TaskEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []*meshnodev1.TaskEvent
	errStop := fmt.Errorf("stop")
	err := c.WatchTask(ctx, id, after, func(ev *meshnodev1.TaskEvent) error {
		got = append(got, ev)
		if stop != nil && stop(ev) {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		t.Fatalf("watch %s after %d: %v (had %d events)", id, after, err, len(got))
	}
	return got
}

// TestTasks runs the task acceptance scenarios on one 3-node cluster over
// real QUIC: tasks run on n3, submitted and watched through n1 and n2.
func TestTasks(t *testing.T) {
	nodes := startCluster(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	release := make(chan struct{})
	taskAgent(t, n3, "steps", "task.steps", func(*agent.Agent) agent.TaskHandlerFunc {
		return func(ctx context.Context, req *agent.Request, task *agent.Task) error {
			if task.ID == "" || !strings.HasPrefix(task.ID, "n3/") {
				return fmt.Errorf("the handler was told task id %q", task.ID)
			}
			for i := 1; i <= 10; i++ {
				if i == 6 {
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
					if err := task.Status(agent.TaskWorking, "second half"); err != nil {
						return err
					}
				}
				if err := task.Artifact(fmt.Sprintf("part-%d", i), append([]byte(nil), req.Payload...)); err != nil {
					return err
				}
			}
			return nil
		}
	})
	started, ended := make(chan string, 3), make(chan string, 3)
	blocking(t, n1, "leaf1", "task.leaf1", started, ended)
	blocking(t, n2, "leaf2", "task.leaf2", started, ended)
	taskAgent(t, n3, "orch", "task.orch", func(a *agent.Agent) agent.TaskHandlerFunc {
		return func(ctx context.Context, _ *agent.Request, task *agent.Task) error {
			c, err := a.Client()
			if err != nil {
				return err
			}
			if err := task.Status(agent.TaskWorking, "calling two leaves"); err != nil {
				return err
			}
			var wg sync.WaitGroup
			for _, leaf := range []string{"task.leaf1", "task.leaf2"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.Call(ctx, leaf, nil)
				}()
			}
			started <- "orch"
			<-ctx.Done()
			ended <- "orch"
			wg.Wait()
			return ctx.Err()
		}
	})
	for _, c := range []string{"task.steps", "task.orch", "task.leaf1", "task.leaf2"} {
		waitFor(t, 20*time.Second, "n1 sees "+c, func() bool { return len(readyAgents(t, n1, c)) == 1 })
	}
	c1, c2 := dialClient(t, n1), dialClient(t, n2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("submit, watch, disconnect, resume from a sequence", func(t *testing.T) {
		task, err := c1.Submit(ctx, "task.steps", []byte("p"), agent.TaskKey("job-1"))
		if err != nil {
			t.Fatal(err)
		}
		if task.GetId() != "n3/job-1" || task.GetAgentId() != "n3/steps" {
			t.Fatalf("submitted task %s on %s; want n3/job-1 on n3/steps", task.GetId(), task.GetAgentId())
		}
		first := watchUntil(t, c1, task.GetId(), 0, func(ev *meshnodev1.TaskEvent) bool { return ev.GetArtifact().GetName() == "part-5" })
		last := first[len(first)-1].GetSeq()
		close(release)
		waitFor(t, 30*time.Second, "the task completes", func() bool {
			got, err := c2.GetTask(ctx, task.GetId())
			return err == nil && got.GetState() == agent.TaskCompleted
		})
		// Resume through another node: exactly the events after last.
		rest := watchUntil(t, c2, task.GetId(), last, nil)
		all := append(first, rest...)
		var parts []string
		for i, ev := range all {
			if ev.GetSeq() != uint64(i+1) {
				t.Fatalf("event %d has seq %d: %v", i+1, ev.GetSeq(), all)
			}
			if a := ev.GetArtifact(); a != nil {
				parts = append(parts, a.GetName())
			}
		}
		want := "part-1 part-2 part-3 part-4 part-5 part-6 part-7 part-8 part-9 part-10"
		if strings.Join(parts, " ") != want {
			t.Fatalf("artifacts %v; want %s", parts, want)
		}
		if s := all[0].GetStatus().GetState(); s != agent.TaskSubmitted {
			t.Fatalf("first event %v; want SUBMITTED", all[0])
		}
		if s := all[len(all)-1].GetStatus().GetState(); s != agent.TaskCompleted {
			t.Fatalf("last event %v; want COMPLETED", all[len(all)-1])
		}
		if again := watchUntil(t, c1, task.GetId(), uint64(len(all)), nil); len(again) != 0 {
			t.Fatalf("watching an ended task from its last event gave %v", again)
		}
	})

	t.Run("resubmitting a key", func(t *testing.T) {
		same, err := c1.Submit(ctx, "task.steps", []byte("p"), agent.TaskKey("job-1"))
		if err != nil || same.GetId() != "n3/job-1" || same.GetState() != agent.TaskCompleted {
			t.Fatalf("same key and payload: %v, %v; want the completed task n3/job-1", same, err)
		}
		_, err = c1.Submit(ctx, "task.steps", []byte("other"), agent.TaskKey("job-1"))
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("same key, other payload: %v; want AlreadyExists", err)
		}
	})

	t.Run("bad watches", func(t *testing.T) {
		err := c1.WatchTask(ctx, "n3/job-1", 1000, func(*meshnodev1.TaskEvent) error { return nil })
		if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "1000") {
			t.Fatalf("after_seq beyond the last: %v; want OutOfRange naming 1000", err)
		}
		err = c1.WatchTask(ctx, "n3/nope", 0, func(*meshnodev1.TaskEvent) error { return nil })
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "n3/nope") {
			t.Fatalf("unknown task: %v; want NotFound naming it", err)
		}
		if _, err := c1.GetTask(ctx, "no-node"); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("malformed id: %v; want InvalidArgument", err)
		}
		if _, err := c1.Submit(ctx, "task.steps", nil, agent.TaskKey("a/b")); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("a key with '/': %v; want InvalidArgument", err)
		}
	})

	t.Run("cancel cascades to the calls the handler made on two other nodes", func(t *testing.T) {
		task, err := c1.Submit(ctx, "task.orch", nil)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for len(seen) < 3 {
			select {
			case who := <-started:
				seen[who] = true
			case <-ctx.Done():
				t.Fatalf("only %v started", seen)
			}
		}
		got, err := c2.CancelTask(ctx, task.GetId(), "test")
		if err != nil || got.GetState() != agent.TaskCanceled {
			t.Fatalf("cancel: %v, %v; want CANCELED", got, err)
		}
		if left := time.Until(got.GetDeadline().AsTime()); left < time.Hour {
			t.Fatalf("the task's deadline is %v away; want the node's task timeout, not the Submit call's", left)
		}
		stopped := map[string]bool{}
		// Well before any deadline of the task or its calls.
		within := time.After(20 * time.Second)
		for len(stopped) < 3 {
			select {
			case who := <-ended:
				stopped[who] = true
			case <-within:
				t.Fatalf("only %v saw the cancel", stopped)
			}
		}
		evs := watchUntil(t, c1, task.GetId(), 0, nil)
		if final := evs[len(evs)-1].GetStatus(); final.GetState() != agent.TaskCanceled || final.GetMessage() != "canceled: test" {
			t.Fatalf("final event %v; want CANCELED with the reason", final)
		}
	})
}
