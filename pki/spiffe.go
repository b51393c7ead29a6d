package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Kind is the kind of workload a SPIFFE identity names.
type Kind string

const (
	// KindNode names a meshnode daemon: spiffe://<td>/node/<node>.
	KindNode Kind = "node"
	// KindAgent names an agent attached to a node: spiffe://<td>/agent/<node>/<agent>.
	KindAgent Kind = "agent"
)

// ErrBadID is returned for a URI that is not a meshnode SPIFFE identity.
var ErrBadID = errors.New("not a meshnode SPIFFE id")

// ID is an authenticated workload identity.
type ID struct {
	TrustDomain string
	Kind        Kind
	Node        string
	Agent       string // empty for KindNode
}

// NodeID returns the identity of node name in trust domain td.
func NodeID(td, name string) ID { return ID{TrustDomain: td, Kind: KindNode, Node: name} }

// AgentID returns the identity of agent on node in trust domain td.
func AgentID(td, node, agent string) ID {
	return ID{TrustDomain: td, Kind: KindAgent, Node: node, Agent: agent}
}

// String renders the id as a spiffe:// URI.
func (id ID) String() string { return id.URL().String() }

// URL renders the id as a URL, as placed in a certificate's URI SAN.
func (id ID) URL() *url.URL {
	p := "/" + string(id.Kind) + "/" + id.Node
	if id.Kind == KindAgent {
		p += "/" + id.Agent
	}
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: p}
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses a spiffe:// URI naming a node or an agent.
func ParseID(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %q: %v", ErrBadID, s, err)
	}
	return idFromURL(u)
}

func idFromURL(u *url.URL) (ID, error) {
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return ID{}, fmt.Errorf("%w: %q: want spiffe://<trust-domain>/node/<name>", ErrBadID, u.String())
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return ID{}, fmt.Errorf("%w: %q: empty or relative path segment", ErrBadID, u.String())
		}
	}
	switch {
	case len(parts) == 2 && parts[0] == string(KindNode):
		return NodeID(u.Host, parts[1]), nil
	case len(parts) == 3 && parts[0] == string(KindAgent):
		return AgentID(u.Host, parts[1], parts[2]), nil
	}
	return ID{}, fmt.Errorf("%w: %q: path must be /node/<name> or /agent/<node>/<agent>", ErrBadID, u.String())
}

// IDFromCert returns the identity in cert's single URI SAN. A certificate
// with no URI SAN or with more than one is refused: an identity must be
// unambiguous.
func IDFromCert(cert *x509.Certificate) (ID, error) {
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("%w: certificate has %d URI SANs, want exactly 1", ErrBadID, len(cert.URIs))
	}
	return idFromURL(cert.URIs[0])
}

// ValidateTrustDomain checks td is a SPIFFE trust domain name: 1-255 of
// lowercase letters, digits, '.', '-' and '_'.
func ValidateTrustDomain(td string) error {
	if td == "" || len(td) > 255 {
		return fmt.Errorf("%w: trust domain %q must be 1-255 characters", ErrBadID, td)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("%w: trust domain %q: only lowercase letters, digits, '.', '-' and '_' are allowed", ErrBadID, td)
		}
	}
	return nil
}

// ValidateName checks a node or agent name is usable as one SPIFFE path
// segment: 1-128 of letters, digits, '.', '-' and '_', not starting with '.'.
func ValidateName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return fmt.Errorf("%w: name %q must be 1-128 characters and not start with '.'", ErrBadID, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("%w: name %q: only letters, digits, '.', '-' and '_' are allowed", ErrBadID, name)
		}
	}
	return nil
}
