package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentmesh/meshnode/internal/hub"
	"github.com/agentmesh/meshnode/internal/socketapi"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxCapabilities is the most capabilities one agent may register.
const MaxCapabilities = 256

// callerOwner is the process on the other end of the socket, as the kernel
// reports it: what owns the agents it registers.
func callerOwner(ctx context.Context) (hub.Owner, error) {
	cred, err := socketapi.PeerCredFromContext(ctx)
	if err != nil {
		return hub.Owner{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return hub.Owner(cred), nil
}

// ValidateRegistration checks a registration field by field; the error is
// InvalidArgument naming the field and what to use instead.
func ValidateRegistration(req *meshnodev1.RegisterRequest) error {
	bad := func(field, format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, field+": "+format, args...)
	}
	if err := ValidateName(req.GetName()); err != nil {
		return bad("name", "%v", err)
	}
	if n := len(req.GetCapabilities()); n == 0 || n > MaxCapabilities {
		return bad("capabilities", "%d entries; register between 1 and %d", n, MaxCapabilities)
	}
	seen := map[string]bool{}
	for i, c := range req.GetCapabilities() {
		field := "capabilities[" + strconv.Itoa(i) + "]"
		name := c.GetName()
		if name == "" || len(name) > 128 || !utf8.ValidString(name) || strings.ContainsAny(name, " \t\r\n/") {
			return bad(field+".name", "%q: use 1-128 bytes of UTF-8 without spaces or '/'", name)
		}
		if seen[name] {
			return bad(field+".name", "%q is listed twice", name)
		}
		seen[name] = true
		if cost := c.GetCost(); cost < 0 || math.IsNaN(cost) || math.IsInf(cost, 0) {
			return bad(field+".cost", "%v: use a finite number, 0 or more", cost)
		}
		if _, ok := meshnodev1.Proficiency_name[int32(c.GetProficiency())]; !ok {
			return bad(field+".proficiency", "%d is not a proficiency", c.GetProficiency())
		}
		for k, v := range c.GetAttributes() {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || k == "" {
				return bad(field+".attributes", "keys must be non-empty UTF-8, values UTF-8")
			}
		}
	}
	for _, r := range req.GetRoles() {
		if err := ValidateName(r); err != nil {
			return bad("roles", "%v", err)
		}
	}
	if k := len(req.GetVotePublicKey()); k != 0 && k != 32 {
		return bad("vote_public_key", "%d bytes; an ed25519 public key has 32", k)
	}
	return nil
}

// ValidateName checks a node or agent name: 1-64 bytes of UTF-8 letters,
// digits, '.', '-' and '_'. Names end up in SPIFFE URIs and file names.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) > 64 {
		return fmt.Errorf("%q is %d bytes, longer than 64", name, len(name))
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%q is not valid UTF-8", name)
	}
	for _, r := range name {
		ok := r == '.' || r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return fmt.Errorf("%q contains %q; use letters, digits, '.', '-' and '_'", name, r)
		}
	}
	return nil
}
