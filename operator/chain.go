package operator

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// Limits of the chain and the trust bundle.
const (
	// MaxChainDepth bounds the issuers between an operator and the first
	// admin, so a crafted record set cannot make a check walk far.
	MaxChainDepth = 16
	// MaxBundleBytes bounds an encoded TrustBundle.
	MaxBundleBytes = 256 << 10
	// MaxRoots bounds the root certificates in a trust bundle.
	MaxRoots = 16
)

// Records is the stored signed record of each operator, by name: the
// latest version of each, as the state machine keeps them.
type Records = map[string]*meshnodev1.SignedOperatorRecord

// ValidateBundle checks that b names a valid first admin with a 32-byte
// key and holds 1 to MaxRoots root certificates that parse.
func ValidateBundle(b *meshnodev1.TrustBundle) error {
	if err := checkAnchor(b); err != nil {
		return err
	}
	if n := len(b.GetRoots()); n == 0 || n > MaxRoots {
		return fmt.Errorf("%w: %d root certificates, want 1-%d", ErrBadBundle, n, MaxRoots)
	}
	for i, der := range b.GetRoots() {
		if _, err := x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("%w: root %d: %v", ErrBadBundle, i, err)
		}
	}
	return nil
}

// checkAnchor checks the part of the bundle the chain uses, the first
// admin, on every VerifyChain; the roots are parsed once, by ValidateBundle
// or DecodeTrustBundle, when the bundle is loaded.
func checkAnchor(b *meshnodev1.TrustBundle) error {
	if b == nil {
		return fmt.Errorf("%w: no trust bundle", ErrBadBundle)
	}
	if err := ValidName(b.GetFirstAdminName()); err != nil {
		return fmt.Errorf("%w: first admin: %v", ErrBadBundle, err)
	}
	if n := len(b.GetFirstAdminPublicKey()); n != ed25519.PublicKeySize {
		return fmt.Errorf("%w: first admin key is %d bytes, want %d; run `meshnode operator init`", ErrBadBundle, n, ed25519.PublicKeySize)
	}
	return nil
}

// DecodeTrustBundle decodes and validates a trust bundle from untrusted
// bytes.
func DecodeTrustBundle(data []byte) (*meshnodev1.TrustBundle, error) {
	if len(data) > MaxBundleBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadBundle, len(data), MaxBundleBytes)
	}
	b := &meshnodev1.TrustBundle{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBundle, err)
	}
	if err := ValidateBundle(b); err != nil {
		return nil, err
	}
	return b, nil
}

// ClusterID is what admin commands and votes are signed for: the SHA-256
// of the bundle's first root. It is random per cluster (the root key is),
// so a command or vote signed for staging does not count in production,
// even where the trust domain and names are the same.
func ClusterID(b *meshnodev1.TrustBundle) []byte {
	if len(b.GetRoots()) == 0 {
		return nil
	}
	return ClusterIDOfRoot(b.GetRoots()[0])
}

// ClusterIDOfRoot is ClusterID for a bundle whose first root is rootDER:
// what a node that holds the roots but not the bundle signs votes for.
func ClusterIDOfRoot(rootDER []byte) []byte {
	sum := sha256.Sum256(rootDER)
	return sum[:]
}

// FirstAdminRecord returns the record the bundle implies for the first
// admin when none is stored: the bundle's name and key, every role (it
// could grant itself any of them; a fresh cluster must be usable with this
// one key), no expiry, version 0. Storing a record for the first admin
// narrows its roles.
func FirstAdminRecord(b *meshnodev1.TrustBundle) *meshnodev1.OperatorRecord {
	var roles []string
	for _, r := range Roles() {
		roles = append(roles, string(r))
	}
	return &meshnodev1.OperatorRecord{
		Name:      b.GetFirstAdminName(),
		PublicKey: slices.Clone(b.GetFirstAdminPublicKey()),
		Roles:     roles,
		Issuer:    b.GetFirstAdminName(),
	}
}

// VerifyChain returns the record of operator name if it is valid at at:
// well formed, within its validity window, and signed by its issuer, whose
// own record is valid at at and holds RoleAdmin, and so on back to the
// first admin of bundle. The first admin's record must be signed with the
// bundle's key; if records holds none, the bundle implies it
// (FirstAdminRecord). Loops and chains deeper than MaxChainDepth are
// refused. It checks the bundle's first admin, not its roots: validate the
// bundle once when loading it (DecodeTrustBundle, ValidateBundle).
//
// Validity is judged at at for every link: revoking an admin invalidates
// the records it signed until another admin signs them again.
func VerifyChain(bundle *meshnodev1.TrustBundle, records Records, name string, at time.Time) (*meshnodev1.OperatorRecord, error) {
	if err := checkAnchor(bundle); err != nil {
		return nil, err
	}
	c := chain{bundle: bundle, get: func(n string) *meshnodev1.SignedOperatorRecord { return records[n] }, at: at}
	return c.valid(name, map[string]bool{}, 0)
}

// VerifyUpdate checks sr before the state machine stores it in records: it
// decodes, its issuer is an admin whose chain is valid at at (judged with sr
// in place, so it cannot close a loop), its signature verifies, and its
// version is above the stored one's. Its own validity window is not
// checked: a record whose not_after is past is how an operator is revoked.
func VerifyUpdate(bundle *meshnodev1.TrustBundle, records Records, sr *meshnodev1.SignedOperatorRecord, at time.Time) (*meshnodev1.OperatorRecord, error) {
	if err := checkAnchor(bundle); err != nil {
		return nil, err
	}
	rec, err := OpenRecord(sr)
	if err != nil {
		return nil, err
	}
	name := rec.GetName()
	c := chain{bundle: bundle, at: at, get: func(n string) *meshnodev1.SignedOperatorRecord {
		if n == name {
			return sr
		}
		return records[n]
	}}
	if err := c.issued(rec, sr, map[string]bool{name: true}, 0); err != nil {
		return nil, err
	}
	if prev := records[name]; prev != nil {
		old, err := OpenRecord(prev)
		if err != nil {
			return nil, fmt.Errorf("operator %q: stored record: %w", name, err)
		}
		if err := CheckReplaces(old, rec); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// Admins returns, sorted, the names of the operators whose chain is valid at
// at and who hold RoleAdmin. The state machine refuses a change that would
// leave it empty.
func Admins(bundle *meshnodev1.TrustBundle, records Records, at time.Time) []string {
	names := []string{bundle.GetFirstAdminName()}
	for n := range records {
		if n != bundle.GetFirstAdminName() {
			names = append(names, n)
		}
	}
	var admins []string
	for _, n := range names {
		if rec, err := VerifyChain(bundle, records, n, at); err == nil && HasRole(rec, RoleAdmin) {
			admins = append(admins, n)
		}
	}
	slices.Sort(admins)
	return admins
}

// chain walks issuers from an operator to the first admin.
type chain struct {
	bundle *meshnodev1.TrustBundle
	get    func(name string) *meshnodev1.SignedOperatorRecord
	at     time.Time
}

// valid returns name's record if it and its issuers are valid. path holds
// the names already on the walk, depth their number.
func (c chain) valid(name string, path map[string]bool, depth int) (*meshnodev1.OperatorRecord, error) {
	if depth > MaxChainDepth {
		return nil, fmt.Errorf("operator %q: %w: more than %d issuers to the first admin", name, ErrChainTooDeep, MaxChainDepth)
	}
	if path[name] {
		return nil, fmt.Errorf("operator %q: %w: it is its own issuer's issuer", name, ErrChainLoop)
	}
	path[name] = true
	sr := c.get(name)
	if sr == nil {
		if name == c.bundle.GetFirstAdminName() {
			return FirstAdminRecord(c.bundle), nil
		}
		return nil, fmt.Errorf("operator %q: %w: no record; an admin must add it with `meshnode operator add`", name, ErrUnknownOperator)
	}
	rec, err := OpenRecord(sr)
	if err != nil {
		return nil, fmt.Errorf("operator %q: %w", name, err)
	}
	if rec.GetName() != name {
		return nil, fmt.Errorf("operator %q: %w: stored record names %q", name, ErrBadRecord, rec.GetName())
	}
	if err := c.issued(rec, sr, path, depth); err != nil {
		return nil, err
	}
	if err := CheckValidAt(rec, c.at); err != nil {
		return nil, err
	}
	return rec, nil
}

// issued checks that rec (decoded from sr) was signed by its issuer and
// that the issuer is a valid admin: the bundle's key for the first admin,
// the issuer's chain for anyone else.
func (c chain) issued(rec *meshnodev1.OperatorRecord, sr *meshnodev1.SignedOperatorRecord, path map[string]bool, depth int) error {
	name, first := rec.GetName(), c.bundle.GetFirstAdminName()
	var key ed25519.PublicKey
	if name == first {
		if rec.GetIssuer() != first {
			return fmt.Errorf("operator %q: %w: the first admin's record must be issued by itself with the trust bundle's key, not by %q", name, ErrBadRecord, rec.GetIssuer())
		}
		key = c.bundle.GetFirstAdminPublicKey()
	} else {
		issuer, err := c.valid(rec.GetIssuer(), path, depth+1)
		if err != nil {
			return fmt.Errorf("operator %q: issuer: %w", name, err)
		}
		if !HasRole(issuer, RoleAdmin) {
			return fmt.Errorf("operator %q: %w: issuer %q has roles %v", name, ErrIssuerNotAdmin, issuer.GetName(), issuer.GetRoles())
		}
		key = issuer.GetPublicKey()
	}
	if _, err := VerifyRecord(key, sr); err != nil {
		return err
	}
	return nil
}
