package operator

import "errors"

// Errors of operator records and the chain of trust. Each is wrapped with
// the operator it concerns.
var (
	// ErrUnknownOperator: no record for the operator, or its record is not
	// valid now (revoked operators included).
	ErrUnknownOperator = errors.New("unknown or revoked operator")
	// ErrBadRecord: the record does not decode, or a field is invalid.
	ErrBadRecord = errors.New("malformed operator record")
	// ErrBadRecordSignature: the record's signature does not verify with
	// its issuer's key.
	ErrBadRecordSignature = errors.New("operator record signature does not verify")
	// ErrRecordNotYetValid: the record's not_before is after the time of
	// the check.
	ErrRecordNotYetValid = errors.New("operator record not yet valid")
	// ErrRecordExpired: the record's not_after is at or before the time of
	// the check (this is how an operator is revoked).
	ErrRecordExpired = errors.New("operator record expired")
	// ErrIssuerNotAdmin: the record's issuer does not hold the admin role.
	ErrIssuerNotAdmin = errors.New("operator record issuer is not an admin")
	// ErrChainLoop: following issuers leads back to an operator already on
	// the path without reaching the first admin.
	ErrChainLoop = errors.New("operator record chain loops")
	// ErrChainTooDeep: more than MaxChainDepth issuers between an operator
	// and the first admin.
	ErrChainTooDeep = errors.New("operator record chain too deep")
	// ErrBadBundle: the trust bundle lacks a valid first admin or roots.
	ErrBadBundle = errors.New("malformed trust bundle")
	// ErrStaleRecord: a record does not have a higher version than the one
	// it would replace.
	ErrStaleRecord = errors.New("operator record version not newer than the stored one")
)

// Errors of signed commands, in the order VerifyCommand checks them.
var (
	// ErrUnsigned: the command carries no operator signature.
	ErrUnsigned = errors.New("command is not signed by an operator")
	// ErrMalformedCommand: the envelope does not decode, or its nonce or
	// digest has the wrong size.
	ErrMalformedCommand = errors.New("malformed signed command")
	// ErrWrongCluster: the command was signed for another cluster.
	ErrWrongCluster = errors.New("command signed for another cluster")
	// ErrWrongMethod: the command was signed for another method.
	ErrWrongMethod = errors.New("command signed for another method")
	// ErrBodyChanged: the request differs from the one that was signed.
	ErrBodyChanged = errors.New("request changed after signing")
	// ErrBadSignature: the signature does not verify with the operator's
	// key.
	ErrBadSignature = errors.New("command signature does not verify")
	// ErrExpired: the command is not yet valid or has expired.
	ErrExpired = errors.New("command expired or not yet valid")
	// ErrTTLTooLong: the command's validity window exceeds MaxCommandTTL.
	ErrTTLTooLong = errors.New("command validity exceeds the maximum")
	// ErrRoleMissing: the operator lacks the role the method needs.
	ErrRoleMissing = errors.New("operator lacks the role")
)

// ErrInsecureKeyFile: a private key file is accessible to group or others.
var ErrInsecureKeyFile = errors.New("operator key file is readable by others")
