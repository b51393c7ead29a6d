package operator

import "encoding/binary"

// Domain-separation contexts: each signed structure starts with its own, so
// bytes signed for one purpose can never be presented as another (a record
// as a command, v1 as v2, an operator signature as a quorum vote).
const (
	// RecordContext prefixes the message an operator record's signature
	// covers.
	RecordContext = "meshnode/operator/record/v1"
	// CommandContext prefixes the message a signed command's signature
	// covers.
	CommandContext = "meshnode/operator/command/v1"
)

// encoder builds an injective byte string: every variable-length field is
// a 4-byte big-endian length followed by its bytes, every integer is fixed
// width, and the field order is fixed. Two different field tuples never
// encode to the same bytes, unlike plain concatenation; and unlike proto
// marshalling the output does not depend on the implementation.
type encoder struct{ b []byte }

func (e *encoder) bytes(p []byte) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) str(s string) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) i64(v int64) { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
