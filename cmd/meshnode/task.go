package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func newTaskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Submit, inspect, watch and cancel long-running tasks",
		Long: `A task runs on an agent for as long as it needs; its state and events are kept
by the node of that agent (for --task-retention after it ends) and can be read
through any node. Task ids are "<node>/<key>".`,
		Example: `  meshnode task submit report.build --data '{"month":"2025-01"}' --id report-2025-01
  meshnode task watch n3/report-2025-01
  meshnode task cancel n3/report-2025-01`,
	}
	cmd.AddCommand(newTaskSubmitCmd(), newTaskGetCmd(), newTaskWatchCmd(), newTaskCancelCmd())
	return cmd
}

func newTaskSubmitCmd() *cobra.Command {
	var cf *clientFlags
	var data, contentType, key string
	var deadline time.Duration
	var watch bool
	cmd := &cobra.Command{
		Use:   "submit CAPABILITY",
		Short: "Start a task and print it (or follow it with --watch)",
		Long: `Start a task on the best agent for CAPABILITY and print it as soon as the
agent's node has it. --data is as for 'meshnode call' (inline, @FILE or -).
--id chooses the task's key: the same key and payload again return the
existing task, another payload is refused. --watch then prints its events
until it ends, and exits 1 if it failed or was canceled.`,
		Example: `  meshnode task submit report.build --data '{"month":"2025-01"}'
  meshnode task submit report.build --data @job.json --id report-2025-01 --watch
  meshnode task submit crawl --data '"https://example.com"' --deadline 2h --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := readData(data, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := checkJSONData(payload, contentType); err != nil {
				return err
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			req := &meshnodev1.SubmitRequest{Capability: args[0], Payload: payload, ContentType: contentType, Id: key}
			if deadline > 0 {
				req.Deadline = timestamppb.New(time.Now().Add(deadline))
			}
			tc := meshnodev1.NewTaskServiceClient(conn)
			resp, err := tc.Submit(ctx, req)
			if err != nil {
				return rpcError("submit "+args[0], err, cf.socketPath())
			}
			if !watch {
				return printTask(cmd.OutOrStdout(), resp.GetTask(), cf.json)
			}
			if !cf.json {
				fmt.Fprintf(cmd.ErrOrStderr(), "task %s on %s\n", resp.GetTask().GetId(), resp.GetTask().GetAgentId())
			}
			return watchTask(cmd, tc, resp.GetTask().GetId(), 0, cf)
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringVar(&data, "data", "", "payload: inline, @FILE, or - for standard input")
	cmd.Flags().StringVar(&contentType, "content-type", "application/json", "MIME type of the payload")
	cmd.Flags().StringVar(&key, "id", "", "the task's key (letters, digits, . _ : -); resubmitting it is idempotent")
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "the task must end within this (default: the node's --task-timeout)")
	cmd.Flags().BoolVar(&watch, "watch", false, "print the task's events until it ends")
	return cmd
}

func newTaskGetCmd() *cobra.Command {
	var cf *clientFlags
	cmd := &cobra.Command{
		Use:     "get ID",
		Short:   "Print a task's current state",
		Example: "  meshnode task get n3/report-2025-01\n  meshnode task get n3/report-2025-01 --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewTaskServiceClient(conn).GetTask(ctx, &meshnodev1.GetTaskRequest{Id: args[0]})
			if err != nil {
				return rpcError("get task "+args[0], err, cf.socketPath())
			}
			return printTask(cmd.OutOrStdout(), resp.GetTask(), cf.json)
		},
	}
	cf = addClientFlags(cmd)
	return cmd
}

func newTaskWatchCmd() *cobra.Command {
	var cf *clientFlags
	var after uint64
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Print a task's events until it ends",
		Long: `Print the task's events after --after, then new ones as they happen, until
the task ends: one line each, or one JSON object per line with --json. If the
watch breaks, the last sequence printed is named on standard error; watch
again with --after set to it to get exactly the rest. Exits 1 if the task
failed or was canceled. --timeout is not applied unless given.`,
		Example: "  meshnode task watch n3/report-2025-01\n  meshnode task watch n3/report-2025-01 --after 12 --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := cf.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			return watchTask(cmd, meshnodev1.NewTaskServiceClient(conn), args[0], after, cf)
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().Uint64Var(&after, "after", 0, "print only the events after this sequence number")
	return cmd
}

func newTaskCancelCmd() *cobra.Command {
	var cf *clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task (and every call its handler made)",
		Example: `  meshnode task cancel n3/report-2025-01
  meshnode task cancel n3/report-2025-01 --reason "wrong month"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewTaskServiceClient(conn).CancelTask(ctx, &meshnodev1.CancelTaskRequest{Id: args[0], Reason: reason})
			if err != nil {
				return rpcError("cancel task "+args[0], err, cf.socketPath())
			}
			return printTask(cmd.OutOrStdout(), resp.GetTask(), cf.json)
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the canceled event")
	return cmd
}

// watchTask prints a task's events after after until its final one.
func watchTask(cmd *cobra.Command, tc meshnodev1.TaskServiceClient, id string, after uint64, cf *clientFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cf.cmd.Flags().Changed("timeout") {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cf.timeout)
		defer cancel()
	}
	ws, err := tc.WatchTask(ctx, &meshnodev1.WatchTaskRequest{Id: id, AfterSeq: after})
	if err != nil {
		return rpcError("watch task "+id, err, cf.socketPath())
	}
	last := after
	for {
		m, err := ws.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "watch broke after event %d; resume with: meshnode task watch %s --after %d\n", last, id, last)
			return rpcError("watch task "+id, err, cf.socketPath())
		}
		ev := m.GetEvent()
		last = ev.GetSeq()
		if err := printEvent(cmd.OutOrStdout(), ev, cf.json); err != nil {
			return err
		}
		if st := ev.GetStatus().GetState(); st == meshnodev1.TaskState_TASK_STATE_FAILED || st == meshnodev1.TaskState_TASK_STATE_CANCELED {
			return fmt.Errorf("task %s %s: %s", id, stateName(st), ev.GetStatus().GetMessage())
		}
	}
}

func printEvent(w io.Writer, ev *meshnodev1.TaskEvent, asJSON bool) error {
	if asJSON {
		b, err := protojson.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	at := ev.GetTime().AsTime().Local().Format(time.TimeOnly)
	if a := ev.GetArtifact(); a != nil {
		body := fmt.Sprintf("(%d bytes)", len(a.GetData()))
		if len(a.GetData()) <= 256 && utf8.Valid(a.GetData()) {
			body = string(a.GetData())
		}
		_, err := fmt.Fprintf(w, "%d\t%s\tartifact %s\t%s\n", ev.GetSeq(), at, orDash(a.GetName()), body)
		return err
	}
	_, err := fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", ev.GetSeq(), at, stateName(ev.GetStatus().GetState()), ev.GetStatus().GetMessage())
	return err
}

func printTask(w io.Writer, t *meshnodev1.Task, asJSON bool) error {
	if asJSON {
		return printJSON(w, t)
	}
	fmt.Fprintf(w, "id:          %s\nstate:       %s\nmessage:     %s\n", t.GetId(), stateName(t.GetState()), orDash(t.GetMessage()))
	fmt.Fprintf(w, "capability:  %s\nagent:       %s\nlast event:  %d\n", t.GetCapability(), t.GetAgentId(), t.GetLastSeq())
	_, err := fmt.Fprintf(w, "created:     %s\ndeadline:    %s\n", t.GetCreatedAt().AsTime().Local().Format(time.RFC3339), t.GetDeadline().AsTime().Local().Format(time.RFC3339))
	return err
}

// stateName is a state as people write it: "input-required".
func stateName(s meshnodev1.TaskState) string {
	switch s {
	case meshnodev1.TaskState_TASK_STATE_SUBMITTED:
		return "submitted"
	case meshnodev1.TaskState_TASK_STATE_WORKING:
		return "working"
	case meshnodev1.TaskState_TASK_STATE_INPUT_REQUIRED:
		return "input-required"
	case meshnodev1.TaskState_TASK_STATE_COMPLETED:
		return "completed"
	case meshnodev1.TaskState_TASK_STATE_FAILED:
		return "failed"
	case meshnodev1.TaskState_TASK_STATE_CANCELED:
		return "canceled"
	}
	return s.String()
}
