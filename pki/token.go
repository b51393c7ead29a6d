package pki

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/jose"
)

// Token format: a compact JWS (JWT) signed ES256 by the cluster's
// intermediate CA key, header {"alg":"ES256","typ":"JWT","kid":<hex
// SHA-256 of the intermediate DER>}, claims:
//
//	jti  unique id, 128 random bits, hex        (one-time use is keyed on it)
//	iss  "meshnode-ca"                          aud "meshnode-join"
//	iat, nbf, exp                               (seconds)
//	sub  bound node name, or absent
//	td   trust domain (cluster)
//	fp   hex SHA-256 of the root certificate's DER
//	role "server" | "client"
//	rejoin true when an operator made it for a re-join of exactly sub
//
// A joining node reads fp and td without verifying the signature (it cannot:
// it has no key yet); it authenticates the CA by its root fingerprint. The CA
// verifies the signature, expiry, role, cluster and one-time use.
const (
	tokenIssuer   = "meshnode-ca"
	tokenAudience = "meshnode-join"
	// MaxTokenSize bounds the bytes ParseToken looks at.
	MaxTokenSize = 4096
	// DefaultTokenTTL is the lifetime of a token created with a zero TTL.
	DefaultTokenTTL = time.Hour
	// MaxTokenTTL bounds how long a join token may live.
	MaxTokenTTL = 7 * 24 * time.Hour
)

// Token refusal reasons; each refusal wraps one.
var (
	ErrTokenMalformed    = errors.New("join token malformed")
	ErrTokenExpired      = errors.New("join token expired")
	ErrTokenWrongCluster = errors.New("join token is for another cluster")
	ErrTokenWrongRole    = errors.New("join token does not allow this role")
	ErrTokenSignature    = errors.New("join token signature invalid")
	ErrTokenName         = errors.New("join token is bound to another node name")
)

// Token is a parsed join token. Fields come from its claims; ParseToken does
// not verify the signature (see the format note above).
type Token struct {
	Raw             string
	ID              string
	TrustDomain     string
	RootFingerprint []byte
	Role            meshnodev1.JoinRole
	Node            string // bound node name; empty if any name may join
	Rejoin          bool   // made for a re-join of exactly Node
	KeyID           string
	IssuedAt        time.Time
	NotBefore       time.Time
	Expires         time.Time
}

type tokenClaims struct {
	jose.Claims
	TrustDomain string `json:"td"`
	Fingerprint string `json:"fp"`
	Role        string `json:"role"`
	Rejoin      bool   `json:"rejoin,omitempty"`
}

// TokenRequest says what token CA.CreateToken makes.
type TokenRequest struct {
	// TTL is the token's lifetime; zero means DefaultTokenTTL.
	TTL time.Duration
	// Role the token grants; unspecified means client.
	Role meshnodev1.JoinRole
	// Node, if set, is the only node name that may use the token.
	Node string
	// Rejoin lets the token claim Node though Node is already registered
	// or a server (a node that lost its data dir). A name is otherwise
	// claimed once; a revoked name never comes back.
	Rejoin bool
}

func roleName(r meshnodev1.JoinRole) string {
	switch r {
	case meshnodev1.JoinRole_JOIN_ROLE_SERVER:
		return "server"
	case meshnodev1.JoinRole_JOIN_ROLE_CLIENT:
		return "client"
	}
	return ""
}

func parseRole(s string) meshnodev1.JoinRole {
	switch s {
	case "server":
		return meshnodev1.JoinRole_JOIN_ROLE_SERVER
	case "client":
		return meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	return meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED
}

func newTokenID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// ParseToken decodes a join token and checks its shape: signed ES256, every
// required claim present and well formed. It does not check the signature or
// the time; the CA does (CA.Join). Errors wrap ErrTokenMalformed.
func ParseToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty; pass the token printed by `meshnode token create`", ErrTokenMalformed)
	}
	if len(s) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTokenMalformed, len(s), MaxTokenSize)
	}
	if strings.Count(s, ".") != 2 || strings.HasSuffix(s, ".") {
		return nil, fmt.Errorf("%w: want a signed JWT (header.claims.signature)", ErrTokenMalformed)
	}
	jwt, err := jose.ParseSigned(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if len(jwt.Headers) != 1 || jwt.Headers[0].Algorithm != string(jose.ES256) {
		return nil, fmt.Errorf("%w: want one ES256 signature", ErrTokenMalformed)
	}
	var c tokenClaims
	if err := jwt.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrTokenMalformed, err)
	}
	return tokenFromClaims(s, jwt.Headers[0].KeyID, &c)
}

func tokenFromClaims(raw, kid string, c *tokenClaims) (*Token, error) {
	bad := func(what string) (*Token, error) { return nil, fmt.Errorf("%w: %s", ErrTokenMalformed, what) }
	fp, err := hex.DecodeString(c.Fingerprint)
	switch {
	case c.Issuer != tokenIssuer || !c.Audience.Contains(tokenAudience):
		return bad("not a meshnode join token (issuer/audience)")
	case c.ID == "" || len(c.ID) > 64:
		return bad("missing or oversized id (jti)")
	case c.Expiry == nil || c.IssuedAt == nil:
		return bad("missing exp or iat")
	case err != nil || len(fp) != 32:
		return bad("fp must be a hex SHA-256 root fingerprint")
	case ValidateTrustDomain(c.TrustDomain) != nil:
		return bad(fmt.Sprintf("invalid trust domain %q", c.TrustDomain))
	case parseRole(c.Role) == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED:
		return bad(fmt.Sprintf("unknown role %q", c.Role))
	case c.Subject != "" && ValidateName(c.Subject) != nil:
		return bad(fmt.Sprintf("invalid bound node name %q", c.Subject))
	case c.Rejoin && c.Subject == "":
		return bad("a re-join token must be bound to a node name")
	}
	t := &Token{
		Raw: raw, ID: c.ID, TrustDomain: c.TrustDomain, RootFingerprint: fp,
		Role: parseRole(c.Role), Node: c.Subject, Rejoin: c.Rejoin, KeyID: kid,
		IssuedAt: c.IssuedAt.Time(), Expires: c.Expiry.Time(),
	}
	if c.NotBefore != nil {
		t.NotBefore = c.NotBefore.Time()
	}
	return t, nil
}

// signToken makes a token for req, signed by s's intermediate key.
func signToken(s *signer, req TokenRequest, now time.Time) (string, *Token, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", nil, fmt.Errorf("pki: token TTL %s out of range (0, %s]", ttl, MaxTokenTTL)
	}
	role := req.Role
	if role == meshnodev1.JoinRole_JOIN_ROLE_UNSPECIFIED {
		role = meshnodev1.JoinRole_JOIN_ROLE_CLIENT
	}
	if roleName(role) == "" {
		return "", nil, fmt.Errorf("pki: unknown token role %v", role)
	}
	if req.Node != "" {
		if err := ValidateName(req.Node); err != nil {
			return "", nil, fmt.Errorf("pki: token bound name: %w", err)
		}
	}
	if req.Rejoin && req.Node == "" {
		return "", nil, fmt.Errorf("pki: a re-join token needs the node name it re-joins")
	}
	id, err := newTokenID()
	if err != nil {
		return "", nil, fmt.Errorf("pki: token id: %w", err)
	}
	kid := hex.EncodeToString(Fingerprint(s.chain[0]))
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		new(jose.SignerOptions).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", nil, fmt.Errorf("pki: token signer: %w", err)
	}
	c := tokenClaims{
		Claims: jose.Claims{
			ID: id, Issuer: tokenIssuer, Audience: jose.Audience{tokenAudience}, Subject: req.Node,
			IssuedAt: jose.NewNumericDate(now), NotBefore: jose.NewNumericDate(now),
			Expiry: jose.NewNumericDate(now.Add(ttl)),
		},
		TrustDomain: s.td, Fingerprint: hex.EncodeToString(s.rootFP), Role: roleName(role), Rejoin: req.Rejoin,
	}
	raw, err := jose.Signed(sig).Claims(c).Serialize()
	if err != nil {
		return "", nil, fmt.Errorf("pki: signing token: %w", err)
	}
	tok, err := tokenFromClaims(raw, kid, &c)
	return raw, tok, err
}

// tokenSkew tolerates clocks of the token's maker and checker disagreeing.
const tokenSkew = time.Minute

// verifyToken checks raw's signature against s and its claims against now
// and the cluster. It does not record use; the caller does, last.
func verifyToken(s *signer, raw string, now time.Time) (*Token, error) {
	tok, err := ParseToken(raw)
	if err != nil {
		return nil, err
	}
	if tok.TrustDomain != s.td {
		return tok, fmt.Errorf("%w: token is for trust domain %q, this CA serves %q", ErrTokenWrongCluster, tok.TrustDomain, s.td)
	}
	if !s.hasRoot(tok.RootFingerprint) {
		return tok, fmt.Errorf("%w: token names root %x, not one of this cluster's roots", ErrTokenWrongCluster, tok.RootFingerprint[:8])
	}
	jwt, err := jose.ParseSigned(strings.TrimSpace(raw))
	if err != nil {
		return tok, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	var c tokenClaims
	if err := jose.Verify(jwt, s.chain[0].PublicKey, &c); err != nil {
		return tok, fmt.Errorf("%w: %v (was it made by this cluster's current CA?)", ErrTokenSignature, err)
	}
	if now.After(tok.Expires) {
		return tok, fmt.Errorf("%w: id %s expired at %s; create a new one with `meshnode token create`", ErrTokenExpired, tok.ID, tok.Expires.UTC().Format(time.RFC3339))
	}
	if tok.IssuedAt.After(now.Add(tokenSkew)) || (!tok.NotBefore.IsZero() && tok.NotBefore.After(now.Add(tokenSkew))) {
		return tok, fmt.Errorf("%w: id %s is not valid yet (check the clocks)", ErrTokenExpired, tok.ID)
	}
	return tok, nil
}
