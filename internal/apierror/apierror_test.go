package apierror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/quorum"
	"github.com/agentmesh/meshnode/routing"
)

func TestMap(t *testing.T) {
	// What consensus.Store.Apply returns when nothing commits in time.
	noLeader := fmt.Errorf("applying command k1 (outcome unknown): %w", errors.Join(consensus.ErrNoLeader, context.DeadlineExceeded))
	cases := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"status passes through", status.Error(codes.AlreadyExists, "taken"), codes.AlreadyExists},
		{"wrapped status passes through", fmt.Errorf("ctx: %w", status.Error(codes.PermissionDenied, "no")), codes.PermissionDenied},
		{"no leader is retryable", noLeader, codes.Unavailable},
		{"client without a server", fmt.Errorf("%w: this client knows no live server", consensus.ErrNoLeader), codes.Unavailable},
		// The FSM's NOT_FOUND, as Apply returns it: a deregister of an
		// agent already gone. A retry cannot fix it.
		{"record already gone", fmt.Errorf("%w: agent \"n1/a\"", consensus.ErrNotFound), codes.NotFound},
		{"refused command", fmt.Errorf("%w: capabilities[0].cost: NaN", consensus.ErrInvalidCommand), codes.InvalidArgument},
		{"token used", consensus.ErrTokenUsed, codes.FailedPrecondition},
		{"pki token used", fmt.Errorf("use token: %w", pki.ErrTokenUsed), codes.FailedPrecondition},
		{"malformed token", pki.ErrTokenMalformed, codes.InvalidArgument},
		{"unknown decision", fmt.Errorf("decision p1: %w", quorum.ErrNotFound), codes.NotFound},
		{"bad proposal", fmt.Errorf("%w: rule", quorum.ErrInvalidProposal), codes.InvalidArgument},
		{"no capability", routing.ErrNoCapability, codes.NotFound},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"canceled", fmt.Errorf("watch: %w", context.Canceled), codes.Canceled},
		{"unknown error is internal", errors.New("disk on fire"), codes.Internal},
		{"an agent's Unknown stays Unknown", status.Error(codes.Unknown, "agent said no"), codes.Unknown},
		{"Unknown wrapping a sentinel maps by the sentinel", errors.Join(consensus.ErrNotFound, status.Error(codes.Unknown, "remote")), codes.NotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Map(c.err)
			if status.Code(got) != c.want {
				t.Fatalf("Map(%q) = %v, want %v", c.err, status.Code(got), c.want)
			}
			if _, ok := status.FromError(got); !ok {
				t.Fatalf("Map(%q) = %T, not a status", c.err, got)
			}
			if msg := status.Convert(got).Message(); strings.Contains(msg, "\n") {
				t.Errorf("message has a newline: %q", msg)
			}
			if Code(c.err) != c.want {
				t.Errorf("Code = %v, want %v", Code(c.err), c.want)
			}
		})
	}
	if Map(nil) != nil || Wrap("x", nil) != nil || Code(nil) != codes.OK {
		t.Error("nil must stay nil")
	}
}

// TestWrapKeepsOneAdvice: the no-leader answer says what to do once, in one
// line, after what was being done.
func TestWrapKeepsOneAdvice(t *testing.T) {
	err := Wrap("register agent n1/a", fmt.Errorf("applying command k1 (outcome unknown): %w", errors.Join(consensus.ErrNoLeader, context.DeadlineExceeded)))
	msg := status.Convert(err).Message()
	if !strings.HasPrefix(msg, "register agent n1/a: ") {
		t.Errorf("message %q does not start with what was being done", msg)
	}
	if n := strings.Count(msg, "meshnode members"); n != 1 {
		t.Errorf("advice appears %d times in %q", n, msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message has a newline: %q", msg)
	}
	// A status built for the caller keeps its own message.
	if got := status.Convert(Wrap("x", status.Error(codes.NotFound, "agent a is not registered"))).Message(); got != "agent a is not registered" {
		t.Errorf("status message rewritten to %q", got)
	}
}

func TestResult(t *testing.T) {
	cases := []struct {
		st   meshnodev1.CommandStatus
		want codes.Code
	}{
		{meshnodev1.CommandStatus_COMMAND_STATUS_OK, codes.OK},
		{meshnodev1.CommandStatus_COMMAND_STATUS_UNSPECIFIED, codes.OK},
		{meshnodev1.CommandStatus_COMMAND_STATUS_NOT_FOUND, codes.NotFound},
		{meshnodev1.CommandStatus_COMMAND_STATUS_INVALID, codes.InvalidArgument},
		{meshnodev1.CommandStatus_COMMAND_STATUS_TOKEN_USED, codes.FailedPrecondition},
		{meshnodev1.CommandStatus(99), codes.FailedPrecondition},
	}
	for _, c := range cases {
		err := Result("deregister agent n1/a", &meshnodev1.CommandResult{Status: c.st, Message: "agent \"n1/a\""})
		if status.Code(err) != c.want {
			t.Errorf("%v: %v, want %v", c.st, status.Code(err), c.want)
		}
		if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "deregister agent n1/a: ") {
			t.Errorf("%v: message %q lacks what was being done", c.st, status.Convert(err).Message())
		}
	}
	if Result("x", nil) != nil {
		t.Error("no result is no error")
	}
}

// TestTableHasNoShadowedRules: a rule after one for the same sentinel would
// never fire.
func TestTableHasNoShadowedRules(t *testing.T) {
	for i, a := range Table {
		for _, b := range Table[i+1:] {
			if errors.Is(b.Err, a.Err) {
				t.Errorf("rule for %q is shadowed by the earlier rule for %q", b.Err, a.Err)
			}
		}
		if a.Code == codes.OK || a.Code == codes.Unknown {
			t.Errorf("rule for %q maps to %v", a.Err, a.Code)
		}
	}
}
