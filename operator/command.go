package operator

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/protobuf/proto"
)

// Limits of a signed command.
const (
	// MaxCommandTTL bounds how long a signed command stays valid, and so
	// how long servers must remember its nonce.
	MaxCommandTTL = 5 * time.Minute
	// ClockSkew is how far in the future issued_at may be: the operator's
	// clock and the leader's may disagree by this much.
	ClockSkew = 30 * time.Second
	// NonceSize is the size of a command nonce.
	NonceSize = 16
	// MaxSignedCommandBytes bounds an encoded SignedCommand: three small
	// integers, a method name, a name and four fixed-size byte fields.
	MaxSignedCommandBytes = 2 << 10
	// MaxClusterIDBytes and MaxMethodBytes bound the variable fields.
	MaxClusterIDBytes = 256
	MaxMethodBytes    = 256
)

// Digest returns the SHA-256 of the deterministic protobuf encoding of
// req. Signer and verifier both compute it from the message they hold, so
// the operator signs exactly the request the server applies.
func Digest(req proto.Message) ([32]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return [32]byte{}, fmt.Errorf("encoding request: %w", err)
	}
	return sha256.Sum256(b), nil
}

// SignCommand returns operator op's signed envelope for calling method on
// cluster clusterID with req, valid from now for ttl (at most
// MaxCommandTTL). A nil nonce is replaced by NonceSize random bytes.
func SignCommand(op string, key ed25519.PrivateKey, clusterID []byte, method string, req proto.Message, now time.Time, ttl time.Duration, nonce []byte) (*meshnodev1.SignedCommand, error) {
	if err := ValidName(op); err != nil {
		return nil, fmt.Errorf("signing %s: %w", method, err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing %s: operator key is %d bytes, want %d", method, len(key), ed25519.PrivateKeySize)
	}
	if ttl <= 0 || ttl > MaxCommandTTL {
		return nil, fmt.Errorf("signing %s: %w: ttl %s, want (0, %s]", method, ErrTTLTooLong, ttl, MaxCommandTTL)
	}
	if len(clusterID) == 0 || len(clusterID) > MaxClusterIDBytes || method == "" || len(method) > MaxMethodBytes {
		return nil, fmt.Errorf("signing %q: %w: cluster id must be 1-%d bytes and method 1-%d", method, ErrMalformedCommand, MaxClusterIDBytes, MaxMethodBytes)
	}
	if nonce == nil {
		nonce = make([]byte, NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("signing %s: nonce: %w", method, err)
		}
	} else if len(nonce) != NonceSize {
		return nil, fmt.Errorf("signing %s: %w: nonce is %d bytes, want %d", method, ErrMalformedCommand, len(nonce), NonceSize)
	}
	d, err := Digest(req)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", method, err)
	}
	sc := &meshnodev1.SignedCommand{
		ClusterId:         bytes.Clone(clusterID),
		Method:            method,
		RequestDigest:     d[:],
		IssuedAtUnixNano:  now.UnixNano(),
		ExpiresAtUnixNano: now.Add(ttl).UnixNano(),
		Nonce:             bytes.Clone(nonce),
		Operator:          op,
	}
	sc.Signature = ed25519.Sign(key, CommandMessage(sc))
	return sc, nil
}

// CommandMessage returns the bytes a command signature covers: every field
// of sc but the signature, in field-number order, after CommandContext.
// Strings and byte fields are a 4-byte big-endian length and the bytes,
// times 8-byte big-endian two's complement:
//
//	len|"meshnode/operator/command/v1"
//	len|cluster_id  len|method  len|request_digest
//	issued_at_unix_nano  expires_at_unix_nano
//	len|nonce  len|operator
//
// Every field is length-prefixed or fixed width, so no two different
// envelopes encode to the same bytes.
func CommandMessage(sc *meshnodev1.SignedCommand) []byte {
	e := encoder{b: make([]byte, 0, 4*7+16+len(CommandContext)+len(sc.GetClusterId())+len(sc.GetMethod())+
		len(sc.GetRequestDigest())+len(sc.GetNonce())+len(sc.GetOperator()))}
	e.str(CommandContext)
	e.bytes(sc.GetClusterId())
	e.str(sc.GetMethod())
	e.bytes(sc.GetRequestDigest())
	e.i64(sc.GetIssuedAtUnixNano())
	e.i64(sc.GetExpiresAtUnixNano())
	e.bytes(sc.GetNonce())
	e.str(sc.GetOperator())
	return e.b
}

// DecodeSignedCommand decodes a SignedCommand from untrusted bytes,
// checking only its size: VerifyCommand checks the rest.
func DecodeSignedCommand(b []byte) (*meshnodev1.SignedCommand, error) {
	if len(b) > MaxSignedCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedCommand, len(b), MaxSignedCommandBytes)
	}
	sc := &meshnodev1.SignedCommand{}
	if err := proto.Unmarshal(b, sc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedCommand, err)
	}
	return sc, nil
}

// Lookup returns the record of the named operator, valid now, or an error
// that names the operator: typically VerifyChain over the records in state
// at the command's time.
type Lookup func(name string) (*meshnodev1.OperatorRecord, error)

// VerifyCommand checks that sc authorises calling method with req on
// cluster clusterID at now, by an operator that lookup knows and that
// holds role need. The checks run in this order, each failing with its own
// sentinel: signature present (ErrUnsigned), envelope well formed
// (ErrMalformedCommand), cluster (ErrWrongCluster), method
// (ErrWrongMethod), request digest (ErrBodyChanged), operator known and
// valid (ErrUnknownOperator), signature (ErrBadSignature), validity window
// (ErrExpired), window length (ErrTTLTooLong), role (ErrRoleMissing).
//
// It does not check the nonce, which needs memory: after VerifyCommand
// succeeds the caller refuses a NonceKey it has seen and remembers it until
// the command's expiry.
func VerifyCommand(sc *meshnodev1.SignedCommand, clusterID []byte, method string, req proto.Message, now time.Time, lookup Lookup, need Role) error {
	if len(sc.GetSignature()) == 0 {
		return fmt.Errorf("%s: %w: this command needs an operator key; create one with `meshnode operator keygen` and have an admin add it", method, ErrUnsigned)
	}
	if n := len(sc.GetNonce()); n != NonceSize {
		return fmt.Errorf("%s: %w: nonce is %d bytes, want %d; sign the command again", method, ErrMalformedCommand, n, NonceSize)
	}
	if n := len(sc.GetRequestDigest()); n != sha256.Size {
		return fmt.Errorf("%s: %w: request digest is %d bytes, want %d; sign the command again", method, ErrMalformedCommand, n, sha256.Size)
	}
	if !bytes.Equal(sc.GetClusterId(), clusterID) {
		return fmt.Errorf("%s: %w: signed for cluster %x, this is cluster %x; sign it with this cluster's id", method, ErrWrongCluster, sc.GetClusterId(), clusterID)
	}
	if sc.GetMethod() != method {
		return fmt.Errorf("%s: %w: signed for %q; sign the command for the method you call", method, ErrWrongMethod, sc.GetMethod())
	}
	d, err := Digest(req)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", method, ErrBodyChanged, err)
	}
	if !bytes.Equal(sc.GetRequestDigest(), d[:]) {
		return fmt.Errorf("%s: %w: the request's digest is %x, the signed one %x; sign the request you send", method, ErrBodyChanged, d[:8], sc.GetRequestDigest()[:8])
	}
	op := sc.GetOperator()
	if lookup == nil {
		return fmt.Errorf("%s: %w: no operator records to check %q against", method, ErrUnknownOperator, op)
	}
	rec, err := lookup(op)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", method, ErrUnknownOperator, err)
	}
	if rec == nil || rec.GetName() != op {
		return fmt.Errorf("%s: %w: no operator %q; an admin must add it with `meshnode operator add`", method, ErrUnknownOperator, op)
	}
	if err := CheckValidAt(rec, now); err != nil {
		return fmt.Errorf("%s: %w: %w", method, ErrUnknownOperator, err)
	}
	if pub := rec.GetPublicKey(); len(pub) != ed25519.PublicKeySize || len(sc.GetSignature()) != ed25519.SignatureSize ||
		!ed25519.Verify(pub, CommandMessage(sc), sc.GetSignature()) {
		return fmt.Errorf("%s: %w: not signed by the key of operator %q; use that operator's key (--operator-key) or have an admin update its record", method, ErrBadSignature, op)
	}
	issued, expires := sc.GetIssuedAtUnixNano(), sc.GetExpiresAtUnixNano()
	t := now.UnixNano()
	if issued > t && uint64(issued)-uint64(t) > uint64(ClockSkew) { // unsigned: no overflow
		return fmt.Errorf("%s: %w: not valid before %s, server time is %s; check the clocks", method, ErrExpired, fmtTime(issued), fmtTime(t))
	}
	if t >= expires {
		return fmt.Errorf("%s: %w: expired at %s, server time is %s; sign the command again", method, ErrExpired, fmtTime(expires), fmtTime(t))
	}
	if expires <= issued {
		return fmt.Errorf("%s: %w: expires at %s, not after its issue time %s; sign the command again", method, ErrExpired, fmtTime(expires), fmtTime(issued))
	}
	if ttl := uint64(expires) - uint64(issued); ttl > uint64(MaxCommandTTL) {
		return fmt.Errorf("%s: %w: valid for %s, at most %s; sign it with a shorter ttl", method, ErrTTLTooLong, time.Duration(ttl), MaxCommandTTL)
	}
	if !ValidRole(need) || !HasRole(rec, need) {
		return fmt.Errorf("%s: %w: operator %q has roles %v, the method needs %q; ask an admin to grant it", method, ErrRoleMissing, op, rec.GetRoles(), need)
	}
	return nil
}

// NonceKey returns the key under which a verified command's nonce is
// remembered: operator and nonce, length-prefixed, so two operators'
// nonces never collide and one operator cannot burn another's.
func NonceKey(sc *meshnodev1.SignedCommand) string {
	e := encoder{b: make([]byte, 0, 8+len(sc.GetOperator())+len(sc.GetNonce()))}
	e.str(sc.GetOperator())
	e.bytes(sc.GetNonce())
	return string(e.b)
}

// Expiry returns when sc expires: the caller may forget its nonce then.
func Expiry(sc *meshnodev1.SignedCommand) time.Time {
	return time.Unix(0, sc.GetExpiresAtUnixNano())
}
