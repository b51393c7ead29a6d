package operator

import (
	"crypto/ed25519"
	"fmt"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// Size limits, checked before anything is decoded or allocated.
const (
	// MaxRecordBytes bounds an encoded OperatorRecord: a name, a key, a few
	// roles and four small fields fit in well under 512 bytes.
	MaxRecordBytes = 1 << 10
	// MaxSignedRecordBytes bounds an encoded SignedOperatorRecord.
	MaxSignedRecordBytes = MaxRecordBytes + 128
	// MaxRoles bounds the roles of one record.
	MaxRoles = 16
)

// SignRecord validates rec, sets its issuer to issuerName and returns it
// deterministically encoded and signed with issuerKey. It does not check
// that the issuer is an admin: VerifyChain does, wherever the record is
// used.
func SignRecord(issuerName string, issuerKey ed25519.PrivateKey, rec *meshnodev1.OperatorRecord) (*meshnodev1.SignedOperatorRecord, error) {
	if rec == nil {
		return nil, fmt.Errorf("signing record: %w: no record", ErrBadRecord)
	}
	if len(issuerKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing record of %q: issuer key is %d bytes, want %d", rec.GetName(), len(issuerKey), ed25519.PrivateKeySize)
	}
	rec = proto.CloneOf(rec)
	rec.Issuer = issuerName
	if err := ValidateRecord(rec); err != nil {
		return nil, fmt.Errorf("signing record: %w", err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("signing record of %q: encoding: %w", rec.GetName(), err)
	}
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("signing record of %q: %w: %d bytes, at most %d", rec.GetName(), ErrBadRecord, len(b), MaxRecordBytes)
	}
	return &meshnodev1.SignedOperatorRecord{
		Record:    b,
		Signature: ed25519.Sign(issuerKey, RecordMessage(b)),
	}, nil
}

// RecordMessage returns the bytes a record signature covers: RecordContext
// and the encoded record, each length-prefixed.
func RecordMessage(record []byte) []byte {
	e := encoder{b: make([]byte, 0, 8+len(RecordContext)+len(record))}
	e.str(RecordContext)
	e.bytes(record)
	return e.b
}

// ValidateRecord checks a record's fields: a valid name and issuer, a
// 32-byte key, known roles without repeats, and a validity window that is
// not empty.
func ValidateRecord(rec *meshnodev1.OperatorRecord) error {
	name := rec.GetName()
	if err := ValidName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if err := ValidName(rec.GetIssuer()); err != nil {
		return fmt.Errorf("%w: record of %q: issuer: %v", ErrBadRecord, name, err)
	}
	if n := len(rec.GetPublicKey()); n != ed25519.PublicKeySize {
		return fmt.Errorf("%w: record of %q: public key is %d bytes, want %d", ErrBadRecord, name, n, ed25519.PublicKeySize)
	}
	if len(rec.GetRoles()) > MaxRoles {
		return fmt.Errorf("%w: record of %q: %d roles, at most %d", ErrBadRecord, name, len(rec.GetRoles()), MaxRoles)
	}
	seen := map[string]bool{}
	for _, r := range rec.GetRoles() {
		if !ValidRole(Role(r)) {
			return fmt.Errorf("%w: record of %q: unknown role %q (roles: %v)", ErrBadRecord, name, r, Roles())
		}
		if seen[r] {
			return fmt.Errorf("%w: record of %q: role %q listed twice", ErrBadRecord, name, r)
		}
		seen[r] = true
	}
	if nb, na := rec.GetNotBeforeUnixNano(), rec.GetNotAfterUnixNano(); na != 0 && na <= nb {
		return fmt.Errorf("%w: record of %q: not_after %s is not after not_before %s", ErrBadRecord, name, fmtTime(na), fmtTime(nb))
	}
	return nil
}

// DecodeSignedRecord decodes a SignedOperatorRecord from untrusted bytes
// and its record, checking sizes and fields but not the signature.
func DecodeSignedRecord(b []byte) (*meshnodev1.SignedOperatorRecord, *meshnodev1.OperatorRecord, error) {
	if len(b) > MaxSignedRecordBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRecord, len(b), MaxSignedRecordBytes)
	}
	sr := &meshnodev1.SignedOperatorRecord{}
	if err := proto.Unmarshal(b, sr); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	rec, err := OpenRecord(sr)
	if err != nil {
		return nil, nil, err
	}
	return sr, rec, nil
}

// OpenRecord decodes and validates the record inside sr without checking
// the signature: use it to learn the name and issuer, then VerifyRecord or
// VerifyChain before trusting anything in it.
func OpenRecord(sr *meshnodev1.SignedOperatorRecord) (*meshnodev1.OperatorRecord, error) {
	b := sr.GetRecord()
	if len(b) == 0 || len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("%w: record is %d bytes, want 1-%d", ErrBadRecord, len(b), MaxRecordBytes)
	}
	rec := &meshnodev1.OperatorRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if err := ValidateRecord(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// VerifyRecord decodes sr and checks its signature with issuerKey. It
// checks neither validity times nor who the issuer is: VerifyChain does.
func VerifyRecord(issuerKey ed25519.PublicKey, sr *meshnodev1.SignedOperatorRecord) (*meshnodev1.OperatorRecord, error) {
	rec, err := OpenRecord(sr)
	if err != nil {
		return nil, err
	}
	if len(issuerKey) != ed25519.PublicKeySize || len(sr.GetSignature()) != ed25519.SignatureSize ||
		!ed25519.Verify(issuerKey, RecordMessage(sr.GetRecord()), sr.GetSignature()) {
		return nil, fmt.Errorf("operator %q: %w: signed by %q", rec.GetName(), ErrBadRecordSignature, rec.GetIssuer())
	}
	return rec, nil
}

// CheckValidAt checks that rec's validity window contains at.
func CheckValidAt(rec *meshnodev1.OperatorRecord, at time.Time) error {
	t := at.UnixNano()
	if nb := rec.GetNotBeforeUnixNano(); nb != 0 && t < nb {
		return fmt.Errorf("operator %q: %w: valid from %s, time is %s", rec.GetName(), ErrRecordNotYetValid, fmtTime(nb), fmtTime(t))
	}
	if na := rec.GetNotAfterUnixNano(); na != 0 && t >= na {
		return fmt.Errorf("operator %q: %w at %s, time is %s; an admin must sign a new version of the record", rec.GetName(), ErrRecordExpired, fmtTime(na), fmtTime(t))
	}
	return nil
}

// CheckReplaces checks that next may replace prev (nil when none is
// stored): same name, higher version. Rotation and revocation are both new
// versions.
func CheckReplaces(prev, next *meshnodev1.OperatorRecord) error {
	if prev == nil {
		return nil
	}
	if prev.GetName() != next.GetName() {
		return fmt.Errorf("%w: record of %q cannot replace the record of %q", ErrBadRecord, next.GetName(), prev.GetName())
	}
	if next.GetVersion() <= prev.GetVersion() {
		return fmt.Errorf("operator %q: %w: version %d, stored %d; sign the record with version %d or higher", next.GetName(), ErrStaleRecord, next.GetVersion(), prev.GetVersion(), prev.GetVersion()+1)
	}
	return nil
}

func fmtTime(unixNano int64) string {
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339Nano)
}
