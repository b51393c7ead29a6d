package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
)

// chainOf joins name with a token for role and returns the issued chain.
func (f *refusalFixture) chainOf(t *testing.T, name string, role meshnodev1.JoinRole) *meshnodev1.JoinResponse {
	t.Helper()
	req := joinReq(t, f.token(t, TokenRequest{Node: name, Role: role, TTL: time.Hour}), name)
	req.Role = role
	resp, err := f.ca.Join(context.Background(), req)
	if err != nil {
		t.Fatalf("join %s as %v: %v", name, role, err)
	}
	return resp
}

func parsedChain(t *testing.T, resp *meshnodev1.JoinResponse) *Credentials {
	t.Helper()
	c := &Credentials{}
	// As a join server presents it: leaf, intermediates and root.
	for _, der := range append(resp.GetChain(), resp.GetRoots()...) {
		c.Chain = append(c.Chain, parseCert(t, der))
	}
	return c
}

func parseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Only servers' certificates carry the server role, and a joiner refuses a
// join server without it: a compromised client at a seed address never
// sees a joiner's token (the check runs in the TLS handshake, before the
// request that carries the token is written).
func TestJoinerRefusesAClientAnsweringTheJoinALPN(t *testing.T) {
	f := newRefusalFixture(t)
	client := parsedChain(t, f.chainOf(t, "c1", meshnodev1.JoinRole_JOIN_ROLE_CLIENT))
	server := parsedChain(t, f.chainOf(t, "s2", meshnodev1.JoinRole_JOIN_ROLE_SERVER))
	if IsServerCert(client.Chain[0]) || !IsServerCert(server.Chain[0]) {
		t.Fatalf("server role: client %v, server %v", client.Chain[0].Subject.OrganizationalUnit, server.Chain[0].Subject.OrganizationalUnit)
	}
	tok, err := ParseToken(f.token(t, TokenRequest{Node: "n9", TTL: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyJoinServer(client.Chain, tok.RootFingerprint, tok.TrustDomain); !errors.Is(err, ErrUnexpectedPeer) {
		t.Fatalf("join server with a client certificate: %v, want ErrUnexpectedPeer", err)
	}
	if _, err := verifyJoinServer(server.Chain, tok.RootFingerprint, tok.TrustDomain); err != nil {
		t.Fatalf("join server with a server certificate: %v", err)
	}
}

// A renewal keeps the server role only while the node is admitted; a
// client's renewal never gains it.
func TestRenewalKeepsTheServerRoleOfAdmittedServersOnly(t *testing.T) {
	f := newRefusalFixture(t)
	for _, tc := range []struct {
		name string
		role meshnodev1.JoinRole
		want bool
	}{
		{"c1", meshnodev1.JoinRole_JOIN_ROLE_CLIENT, false},
		{"s1", meshnodev1.JoinRole_JOIN_ROLE_SERVER, true},
	} {
		f.chainOf(t, tc.name, tc.role)
		key, err := keyutil.GenerateDefaultSigner()
		if err != nil {
			t.Fatal(err)
		}
		der, err := NewCSR(NodeID(testTD, tc.name), key)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := f.ca.Renew(context.Background(), NodeID(testTD, tc.name), &meshnodev1.RenewRequest{Csr: der})
		if err != nil {
			t.Fatal(err)
		}
		leaf := parseCert(t, resp.GetChain()[0])
		if IsServerCert(leaf) != tc.want {
			t.Errorf("%s renewed with server role %v, want %v", tc.name, IsServerCert(leaf), tc.want)
		}
	}
}
