package consensus

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Page sizes of Decisions.
const (
	// DefaultDecisionLimit is the page size when DecisionFilter.Limit is 0.
	DefaultDecisionLimit = 100
	// MaxDecisionLimit bounds DecisionFilter.Limit: one read never clones
	// more decisions (each up to a megabyte) than this.
	MaxDecisionLimit = 1000
)

// ErrInvalidPageToken means a page token was not one Decisions issued.
var ErrInvalidPageToken = errors.New("consensus: invalid page token")

// DecisionFilter selects and pages Decisions. Zero fields match everything
// and start at the newest decision.
type DecisionFilter struct {
	// Status, if set, keeps decisions in this status only ("pending",
	// "approved", ...). Served from an index: other decisions are not
	// visited.
	Status string
	// Match, if set, keeps only the records it accepts. It is called in page
	// order on candidates past the page token until the page is full and one
	// more record matched (so a next token means a next page), under no
	// lock; it must not modify the record. The store treats decision blobs as opaque:
	// this is where a caller filters on their content.
	Match func(*meshnodev1.DecisionRecord) bool
	// PageToken continues after the last decision of the page that returned
	// it; empty starts at the newest.
	PageToken string
	// Limit is the page size: 0 means DefaultDecisionLimit, and it is capped
	// at MaxDecisionLimit.
	Limit int
}

// Decisions returns one page of decisions matching f, newest first (by the
// index that created them; ties, decisions created by one log entry, by id
// descending), the token of the next page (empty when no matching decision
// follows), and the index of the state read. The token is a position, not
// an offset: paging visits every decision that existed when paging began
// exactly once, whatever is written meanwhile (newer decisions sort before
// the first page), and a page costs its own size, not the pages before it.
// A token Decisions did not issue is ErrInvalidPageToken.
func (s *Store) Decisions(ctx context.Context, opts ReadOptions, f DecisionFilter) ([]*meshnodev1.DecisionRecord, string, uint64, error) {
	after, hasAfter, err := decodeDecisionToken(f.PageToken)
	if err != nil {
		return nil, "", 0, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultDecisionLimit
	}
	limit = min(limit, MaxDecisionLimit)
	txn, idx, err := s.view(ctx, opts)
	if err != nil {
		return nil, "", 0, err
	}
	var it memdb.ResultIterator
	switch {
	case f.Status != "" && hasAfter:
		it, err = txn.ReverseLowerBound(tableDecisions, "status_created", f.Status, after.create, after.id)
	case f.Status != "":
		it, err = txn.ReverseLowerBound(tableDecisions, "status_created", f.Status)
	case hasAfter:
		it, err = txn.ReverseLowerBound(tableDecisions, "created", after.create, after.id)
	default:
		it, err = txn.GetReverse(tableDecisions, "created")
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("listing decisions: %w", err)
	}
	var out []*meshnodev1.DecisionRecord
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*meshnodev1.DecisionRecord)
		if f.Status != "" && r.GetStatus() != f.Status {
			if strings.HasPrefix(r.GetStatus(), f.Status+"\x00") {
				continue // a status with a NUL sorts inside this one's range
			}
			break // past the status's range of the index
		}
		if hasAfter && r.GetCreateIndex() == after.create && r.GetId() == after.id {
			continue // the last record of the previous page
		}
		if f.Match != nil && !f.Match(r) {
			continue
		}
		if len(out) == limit {
			last := out[len(out)-1]
			return out, encodeDecisionToken(last.GetCreateIndex(), last.GetId()), idx, nil
		}
		out = append(out, proto.CloneOf(r))
	}
	return out, "", idx, nil
}

// decisionPosition is where a page ended: the last record's sort key.
type decisionPosition struct {
	create uint64
	id     string
}

// Page tokens are URL-safe base64 of the big-endian create index followed by
// the id: opaque to callers, checked when decoded.
func encodeDecisionToken(create uint64, id string) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), create)
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

func decodeDecisionToken(t string) (decisionPosition, bool, error) {
	if t == "" {
		return decisionPosition{}, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) <= 8 || len(b) > 8+maxIDLen || !utf8.Valid(b[8:]) {
		return decisionPosition{}, false, fmt.Errorf("%w: %q", ErrInvalidPageToken, t)
	}
	return decisionPosition{create: binary.BigEndian.Uint64(b), id: string(b[8:])}, true, nil
}

// decisionOrder indexes decisions by (create index, id), optionally after
// their status, so that a reverse walk yields them newest first. Index
// keys: [status 0x00] create-index (8 bytes, big-endian) id 0x00. Ids are
// valid UTF-8 (ValidateCommand), so they hold no 0xff byte and a status
// alone seeks past every key of that status.
type decisionOrder struct{ byStatus bool }

func (o decisionOrder) FromObject(raw any) (bool, []byte, error) {
	d, ok := raw.(*meshnodev1.DecisionRecord)
	if !ok {
		return false, nil, fmt.Errorf("decision order index: object is %T, not *DecisionRecord", raw)
	}
	return true, o.key(d.GetStatus(), d.GetCreateIndex(), d.GetId()), nil
}

// FromArgs takes (status, create index, id) when byStatus, else (create
// index, id); a status without a position seeks past that status's newest
// decision.
func (o decisionOrder) FromArgs(args ...any) ([]byte, error) {
	status := ""
	if o.byStatus {
		if len(args) == 0 {
			return nil, errors.New("decision order index: a status is required")
		}
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("decision order index: status is %T, not string", args[0])
		}
		status, args = s, args[1:]
	}
	switch len(args) {
	case 0:
		return append(o.prefix(status), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), nil
	case 2:
		create, ok1 := args[0].(uint64)
		id, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("decision order index: position is (%T, %T), not (uint64, string)", args[0], args[1])
		}
		return o.key(status, create, id), nil
	}
	return nil, fmt.Errorf("decision order index: %d position arguments, want 0 or 2", len(args))
}

func (o decisionOrder) prefix(status string) []byte {
	if !o.byStatus {
		return nil
	}
	return append([]byte(status), 0)
}

func (o decisionOrder) key(status string, create uint64, id string) []byte {
	b := binary.BigEndian.AppendUint64(o.prefix(status), create)
	return append(append(b, id...), 0)
}
