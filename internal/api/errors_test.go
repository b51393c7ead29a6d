package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/apierror"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// TestRegisterRefusesNonFiniteCost: NaN and ±Inf are not costs; they are a
// bad request naming the field, not a store failure.
func TestRegisterRefusesNonFiniteCost(t *testing.T) {
	for _, cost := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1} {
		req := &meshnodev1.RegisterRequest{Name: "a", Capabilities: []*meshnodev1.Capability{
			{Name: "ok", Cost: 1}, {Name: "bad", Cost: cost},
		}}
		err := ValidateRegistration(req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("cost %v: %v, want InvalidArgument", cost, err)
			continue
		}
		if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "capabilities[1].cost: ") {
			t.Errorf("cost %v: message %q does not name capabilities[1].cost", cost, msg)
		}
	}
	ok := &meshnodev1.RegisterRequest{Name: "a", Capabilities: []*meshnodev1.Capability{{Name: "free", Cost: 0}, {Name: "dear", Cost: math.MaxFloat64}}}
	if err := ValidateRegistration(ok); err != nil {
		t.Errorf("finite costs refused: %v", err)
	}
}

// TestStoreErrorCodes: the store's sentinels get the codes of the one table.
func TestStoreErrorCodes(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want codes.Code
	}{
		// A deregister of an agent already gone: retrying cannot help, so
		// it must not be Unavailable (the reaper would retry forever).
		{"record gone", fmt.Errorf("%w: agent \"n1/a\"", consensus.ErrNotFound), codes.NotFound},
		// The FSM refusing a command (a NaN cost reaching it) is the
		// caller's fault.
		{"command refused", fmt.Errorf("%w: capabilities[0].cost", consensus.ErrInvalidCommand), codes.InvalidArgument},
		{"no leader", fmt.Errorf("%w: this client knows no live server", consensus.ErrNoLeader), codes.Unavailable},
		{"canceled", context.Canceled, codes.Canceled},
	}
	for _, c := range cases {
		if got := status.Code(apierror.Wrap("deregister agent n1/a", c.err)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestStoreErrorNoLeaderAdvisesOnce: the no-leader answer carries
// consensus's advice once, on one line.
func TestStoreErrorNoLeaderAdvisesOnce(t *testing.T) {
	// What Store.Apply returns when no leader commits the write in time.
	applyErr := fmt.Errorf("applying command k1 (outcome unknown): %w", errors.Join(consensus.ErrNoLeader, context.DeadlineExceeded))
	err := apierror.Wrap("register agent n1/a", applyErr)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable", status.Code(err))
	}
	msg := status.Convert(err).Message()
	if strings.Contains(msg, "\n") {
		t.Errorf("message has a raw newline: %q", msg)
	}
	if n := strings.Count(msg, "meshnode members"); n != 1 {
		t.Errorf("advice to check members given %d times: %q", n, msg)
	}
	if !strings.HasPrefix(msg, "register agent n1/a: ") {
		t.Errorf("message %q does not say what was being done", msg)
	}
}
