package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"go.step.sm/crypto/keyutil"
)

// Bounds on what a CA's answer may carry; it is decoded before it is trusted.
const (
	maxResponseCerts = 8
	maxCertSize      = 16 << 10
)

// CredentialsFromJoin checks a JoinResponse and turns it into credentials:
// the leaf must be for key and for spiffe://<token td>/node/<nodeName>, the
// chain must lead to the roots, and the roots must contain the one the token
// names. The response is untrusted input until this returns.
func CredentialsFromJoin(tok *Token, nodeName string, key crypto.Signer, resp *meshnodev1.JoinResponse, now time.Time) (*Credentials, error) {
	if resp.GetTrustDomain() != "" && resp.GetTrustDomain() != tok.TrustDomain {
		return nil, fmt.Errorf("pki: join response is for trust domain %q, token for %q", resp.GetTrustDomain(), tok.TrustDomain)
	}
	c, err := decodeIssued(key, resp.GetChain(), resp.GetRoots())
	if err != nil {
		return nil, fmt.Errorf("pki: join response: %w", err)
	}
	found := false
	for _, r := range c.Roots {
		found = found || bytes.Equal(Fingerprint(r), tok.RootFingerprint)
	}
	if !found {
		return nil, fmt.Errorf("pki: join response: %w: roots do not include the token's root %x", ErrUnknownAuthority, tok.RootFingerprint)
	}
	if err := checkIssuedID(c, NodeID(tok.TrustDomain, nodeName), now); err != nil {
		return nil, fmt.Errorf("pki: join response: %w", err)
	}
	return c, nil
}

// CredentialsFromRenew checks a RenewResponse for key against the identity
// of prev. The new roots must keep at least one of prev's roots (a root
// rotation cross-signs, so they overlap).
func CredentialsFromRenew(prev *Credentials, key crypto.Signer, resp *meshnodev1.RenewResponse, now time.Time) (*Credentials, error) {
	id, err := prev.ID()
	if err != nil {
		return nil, err
	}
	c, err := decodeIssued(key, resp.GetChain(), resp.GetRoots())
	if err != nil {
		return nil, fmt.Errorf("pki: renew response: %w", err)
	}
	overlap := false
	for _, old := range prev.Roots {
		for _, r := range c.Roots {
			overlap = overlap || bytes.Equal(old.Raw, r.Raw)
		}
	}
	if !overlap {
		return nil, fmt.Errorf("pki: renew response: %w: new roots share none with the current ones", ErrUnknownAuthority)
	}
	if err := checkIssuedID(c, id, now); err != nil {
		return nil, fmt.Errorf("pki: renew response: %w", err)
	}
	return c, nil
}

func decodeIssued(key crypto.Signer, chainDER, rootsDER [][]byte) (*Credentials, error) {
	chain, err := parseDERList(chainDER, "chain")
	if err != nil {
		return nil, err
	}
	roots, err := parseDERList(rootsDER, "roots")
	if err != nil {
		return nil, err
	}
	if err := keyutil.VerifyPair(chain[0].PublicKey, key); err != nil {
		return nil, fmt.Errorf("certificate is not for our key: %w", err)
	}
	return &Credentials{Key: key, Chain: chain, Roots: roots}, nil
}

func parseDERList(ders [][]byte, what string) ([]*x509.Certificate, error) {
	if len(ders) == 0 || len(ders) > maxResponseCerts {
		return nil, fmt.Errorf("%s has %d certificates, want 1-%d", what, len(ders), maxResponseCerts)
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for i, d := range ders {
		if len(d) > maxCertSize {
			return nil, fmt.Errorf("%s[%d] is %d bytes, limit %d", what, i, len(d), maxCertSize)
		}
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", what, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func checkIssuedID(c *Credentials, want ID, now time.Time) error {
	id, err := c.Check(want.TrustDomain, now)
	if err != nil {
		return err
	}
	if id != want {
		return fmt.Errorf("%w: issued for %s, asked for %s", ErrUnexpectedPeer, id, want)
	}
	return nil
}
