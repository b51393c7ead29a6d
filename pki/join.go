package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// JoinALPN is the ALPN of the join handshake (server-only TLS; the joiner
// has no certificate yet).
const JoinALPN = "meshnode-join/1"

// MaxCSRSize bounds the CSR bytes a join or renew request may carry.
const MaxCSRSize = 8192

// ErrBadCSR: the certificate request is malformed or asks for more than the
// identity it is entitled to.
var ErrBadCSR = errors.New("certificate request refused")

// Join is the server side of joining: it checks the token (signature,
// cluster, expiry, role, bound name, one-time use) and the CSR, then issues
// a node certificate. Errors are gRPC status errors whose message names the
// reason; the refusal is logged with the token id.
func (ca *CA) Join(ctx context.Context, req *meshnodev1.JoinRequest) (*meshnodev1.JoinResponse, error) {
	resp, tokID, err := ca.join(ctx, req)
	if err != nil {
		ca.log.Warn("refused join", "node", req.GetNodeName(), "token_id", tokID, "err", err)
		return nil, toStatus("join refused", err)
	}
	return resp, nil
}

func (ca *CA) join(ctx context.Context, req *meshnodev1.JoinRequest) (*meshnodev1.JoinResponse, string, error) {
	s := ca.signer()
	tok, err := verifyToken(s, req.GetToken(), ca.cfg.Clock.Now())
	tokID := ""
	if tok != nil {
		tokID = tok.ID
	}
	if err != nil {
		return nil, tokID, err
	}
	role := req.GetRole()
	if role == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED {
		role = meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	if roleName(role) == "" || (role == meshnodev1.JoinRole_JOIN_ROLE_SERVER && tok.Role != role) {
		return nil, tokID, fmt.Errorf("%w: token allows %s, node asked to join as %s", ErrTokenWrongRole, roleName(tok.Role), role)
	}
	name := req.GetNodeName()
	if err := ValidateName(name); err != nil {
		return nil, tokID, fmt.Errorf("%w: node name: %v", ErrBadCSR, err)
	}
	if tok.Node != "" && tok.Node != name {
		return nil, tokID, fmt.Errorf("%w: token is for %q, node is %q", ErrTokenName, tok.Node, name)
	}
	id := NodeID(s.td, name)
	if ca.cfg.Store.IsRevoked(nil, id) {
		return nil, tokID, fmt.Errorf("%w: node name %q is revoked; join under another name", ErrRevoked, name)
	}
	csr, err := ParseCSR(req.GetCsr(), id)
	if err != nil {
		return nil, tokID, err
	}
	// Use the token last: a request refused for another reason leaves it
	// usable. A server's admission is recorded with the use: the role in
	// the request is the node's word, and only the record lets Raft add it.
	use := TokenUse{ID: tok.ID, Expires: tok.Expires, Node: name, Server: role == meshnodev1.JoinRole_JOIN_ROLE_SERVER, Rejoin: tok.Rejoin}
	if err := ca.cfg.Store.UseToken(ctx, use); err != nil {
		return nil, tokID, fmt.Errorf("recording use of token %s: %w", tok.ID, err)
	}
	chain, err := ca.issue(s, csr, id, use.Server)
	if err != nil {
		return nil, tokID, err
	}
	return &meshnodev1.JoinResponse{
		Chain: derChain(chain), Roots: s.rootDER(), TrustDomain: s.td, Role: role,
	}, tokID, nil
}

// Renew is the server side of renewal. peer is the identity the mTLS
// connection authenticated; the CSR must be for exactly that identity.
// Revoked nodes are refused.
func (ca *CA) Renew(ctx context.Context, peer ID, req *meshnodev1.RenewRequest) (*meshnodev1.RenewResponse, error) {
	s := ca.signer()
	err := func() error {
		if peer.Kind != KindNode || peer.TrustDomain != s.td {
			return fmt.Errorf("%w: %s may not renew a node certificate in %s", ErrBadCSR, peer, s.td)
		}
		if ca.cfg.Store.IsRevoked(nil, peer) {
			return fmt.Errorf("%w: %s; it must not be renewed", ErrRevoked, peer)
		}
		return nil
	}()
	var csr *x509.CertificateRequest
	if err == nil {
		csr, err = ParseCSR(req.GetCsr(), peer)
	}
	var chain []*x509.Certificate
	if err == nil {
		// A renewal keeps the server role only while the node is admitted.
		chain, err = ca.issue(s, csr, peer, ca.cfg.Store.IsServer(peer.Node))
	}
	if err != nil {
		ca.log.Warn("refused renewal", "peer", peer.String(), "err", err)
		return nil, toStatus("renewal refused", err)
	}
	return &meshnodev1.RenewResponse{Chain: derChain(chain), Roots: s.rootDER()}, nil
}

// ParseCSR decodes an untrusted DER certificate request and checks that it
// is self-signed by an acceptable key and asks for id and nothing else: at
// most the one URI SAN id, no DNS/IP/email SANs, a common name that is empty
// or id's name. Errors wrap ErrBadCSR.
func ParseCSR(der []byte, id ID) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, want 1-%d", ErrBadCSR, len(der), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return nil, fmt.Errorf("%w: asks for %d DNS/IP/email SANs; only %s may be requested", ErrBadCSR, n, id)
	}
	switch {
	case len(csr.URIs) > 1:
		return nil, fmt.Errorf("%w: asks for %d URI SANs; only %s may be requested", ErrBadCSR, len(csr.URIs), id)
	case len(csr.URIs) == 1 && csr.URIs[0].String() != id.String():
		return nil, fmt.Errorf("%w: asks for %s, entitled to %s", ErrBadCSR, csr.URIs[0], id)
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != id.Node {
		return nil, fmt.Errorf("%w: common name %q differs from node name %q", ErrBadCSR, cn, id.Node)
	}
	return csr, nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("%w: ECDSA key below P-256", ErrBadCSR)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key below 2048 bits", ErrBadCSR)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrBadCSR, pub)
	}
	return nil
}

// toStatus maps a refusal to a gRPC status with a message naming it.
func toStatus(what string, err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrTokenMalformed), errors.Is(err, ErrBadCSR):
		code = codes.InvalidArgument
	case errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenWrongCluster), errors.Is(err, ErrTokenWrongRole),
		errors.Is(err, ErrTokenSignature), errors.Is(err, ErrTokenName), errors.Is(err, ErrTokenUsed), errors.Is(err, ErrRevoked), errors.Is(err, ErrTokenRefused),
		errors.Is(err, ErrNameTaken):
		code = codes.PermissionDenied
	case errors.Is(err, ErrNotFound):
		code = codes.FailedPrecondition
	}
	return &refusal{st: status.Newf(code, "%s: %v", what, err), err: err}
}

// refusal is a gRPC status error that still unwraps to its reason, so
// in-process callers can branch with errors.Is and grpc-go sends the code.
type refusal struct {
	st  *status.Status
	err error
}

func (r *refusal) Error() string              { return r.st.Err().Error() }
func (r *refusal) GRPCStatus() *status.Status { return r.st }
func (r *refusal) Unwrap() error              { return r.err }

func derChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

// NewCSR makes a DER certificate request for id signed by key.
func NewCSR(id ID, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.Node},
		URIs:    []*url.URL{id.URL()},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: creating certificate request for %s: %w", id, err)
	}
	return der, nil
}

// NewJoinRequest builds the request a joining node sends: token, node name
// and a CSR for spiffe://<token's td>/node/<nodeName> signed by key. Role is
// client; set req.Role to JOIN_ROLE_SERVER for a node started with --server.
func NewJoinRequest(token string, nodeName string, key crypto.Signer) (*meshnodev1.JoinRequest, error) {
	tok, err := ParseToken(token)
	if err != nil {
		return nil, err
	}
	if err := ValidateName(nodeName); err != nil {
		return nil, err
	}
	csr, err := NewCSR(NodeID(tok.TrustDomain, nodeName), key)
	if err != nil {
		return nil, err
	}
	return &meshnodev1.JoinRequest{Token: tok.Raw, Csr: csr, NodeName: nodeName, Role: meshnodev1.JoinRole_JOIN_ROLE_CLIENT}, nil
}

// JoinClientTLS is the joining node's TLS config for the join ALPN. It has
// no client certificate; it authenticates the server by finding, in the
// chain the server presents, the root whose SHA-256 the token carries, and
// verifying the server's node certificate against that root alone. No trust
// on first use: a server of another cluster fails the handshake.
func JoinClientTLS(token *Token) *tls.Config {
	fp := append([]byte(nil), token.RootFingerprint...)
	td := token.TrustDomain
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{JoinALPN},
		InsecureSkipVerify: true, //nolint:gosec // verified against the token's root fingerprint below
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyJoinServer(cs.PeerCertificates, fp, td)
			return err
		},
	}
}

func verifyJoinServer(chain []*x509.Certificate, fp []byte, td string) (ID, error) {
	pool := x509.NewCertPool()
	found := false
	for _, c := range chain {
		if bytes.Equal(Fingerprint(c), fp) {
			pool.AddCert(c)
			found = true
		}
	}
	if !found {
		return ID{}, fmt.Errorf("pki: join server: %w: no certificate in its chain matches the token's root fingerprint %x", ErrUnknownAuthority, fp)
	}
	id, err := VerifyPeer(chain, VerifyOptions{TrustDomain: td, Roots: pool, Usage: x509.ExtKeyUsageServerAuth})
	if err != nil {
		return id, fmt.Errorf("pki: join server: %w", err)
	}
	if id.Kind != KindNode {
		return id, fmt.Errorf("pki: join server: %w: %s is not a node", ErrUnexpectedPeer, id)
	}
	// Only a server holds the CA: a client answering the join ALPN (a
	// compromised node at a seed address) would collect joiners' tokens.
	if !IsServerCert(chain[0]) {
		return id, fmt.Errorf("pki: join server: %w: %s is not a server of the cluster; join through a server's address", ErrUnexpectedPeer, id)
	}
	return id, nil
}

// JoinServerConfig is the accepting side of the join ALPN: it presents the
// node certificate (whose chain includes the root, so joiners can match the
// fingerprint) and asks for no client certificate.
func (s *TLSSource) JoinServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{JoinALPN},
		ClientAuth: tls.NoClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cfg.Certificate()
		},
	}
}
