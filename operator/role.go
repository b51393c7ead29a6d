package operator

import (
	"fmt"
	"slices"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Role is a set of admin methods an operator may call. Roles are explicit:
// admin does not imply the others, but an admin may grant any role,
// including admin.
type Role string

// The roles.
const (
	// RoleAdmin: operators, join tokens, node revoke and remove.
	RoleAdmin Role = "admin"
	// RolePolicy: routing, authorization and quorum policy.
	RolePolicy Role = "policy"
	// RoleReviewer: quorum reviews and clearing equivocation flags.
	RoleReviewer Role = "reviewer"
	// RoleAuditor: audit queries.
	RoleAuditor Role = "auditor"
	// RoleViewer: the dashboard.
	RoleViewer Role = "viewer"
)

// Roles lists every role, in a fixed order.
func Roles() []Role {
	return []Role{RoleAdmin, RolePolicy, RoleReviewer, RoleAuditor, RoleViewer}
}

// ValidRole reports whether r is one of the roles.
func ValidRole(r Role) bool {
	return slices.Contains(Roles(), r)
}

// MaxNameLen bounds an operator name in bytes.
const MaxNameLen = 64

// ValidName checks an operator name: 1 to MaxNameLen bytes of ASCII
// letters, digits and ". _ - @". The alphabet keeps names printable in
// logs and unambiguous on the command line.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("operator name %q must be 1-%d bytes", name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '@'
		if !ok {
			return fmt.Errorf("operator name %q: byte %d (%q) is not a letter, digit or one of . _ - @", name, i, c)
		}
	}
	return nil
}

// HasRole reports whether rec grants r.
func HasRole(rec *meshnodev1.OperatorRecord, r Role) bool {
	return slices.Contains(rec.GetRoles(), string(r))
}
