package selfrevoke

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/consensus"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

type fakeReplica struct {
	readErr error
	recs    []*meshnodev1.RevocationRecord
}

func (f *fakeReplica) IsNodeRevoked(context.Context, consensus.ReadOptions, string) (bool, error) {
	return false, f.readErr
}
func (f *fakeReplica) Revocations(context.Context, consensus.ReadOptions) ([]*meshnodev1.RevocationRecord, uint64, error) {
	return f.recs, 0, nil
}

type fakeCaller struct{ err error }

func (f fakeCaller) Call(context.Context, string, string, []byte) ([]byte, error) { return nil, f.err }

func watcher(r Replica, revoked bool, seedErr error, exit bool, log *bytes.Buffer) *Watcher {
	return New(Config{Node: "n2", Replica: r, IsRevoked: func(*big.Int) bool { return revoked }, Serial: func() *big.Int { return big.NewInt(7) },
		Seeds: []string{"s1"}, Caller: fakeCaller{seedErr}, ExitOnRevoke: exit, Logger: slog.New(slog.NewTextHandler(log, nil))})
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestRevokedInTheReplica(t *testing.T) {
	var log bytes.Buffer
	w := watcher(&fakeReplica{recs: []*meshnodev1.RevocationRecord{{Node: "n2", Reason: "stolen laptop"}}}, true, nil, true, &log)
	w.Check(context.Background())
	w.Check(context.Background())
	if !closed(w.Done()) || !errors.Is(w.Err(), ErrRevoked) || !strings.Contains(w.Err().Error(), "stolen laptop") {
		t.Fatalf("done %v, err %v", closed(w.Done()), w.Err())
	}
	if n := strings.Count(log.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d error lines, want 1:\n%s", n, log.String())
	}
}

func TestNotRevoked(t *testing.T) {
	var log bytes.Buffer
	w := watcher(&fakeReplica{}, false, nil, true, &log)
	w.Check(context.Background())
	if closed(w.Done()) || w.Err() != nil || log.Len() != 0 {
		t.Fatalf("a node that is not revoked: done %v, err %v, log %q", closed(w.Done()), w.Err(), log.String())
	}
}

// With no replica, only repeated bad_certificate refusals from every seed
// convince the watcher; one refusal among answers does not.
func TestRefusedBySeeds(t *testing.T) {
	var log bytes.Buffer
	bad := &quic.TransportError{Remote: true, ErrorCode: badCertificateAlert}
	w := watcher(&fakeReplica{readErr: errors.New("no replica")}, false, bad, true, &log)
	for i := range refusedChecksToConclude {
		if closed(w.Done()) {
			t.Fatalf("concluded after %d checks", i)
		}
		w.Check(context.Background())
	}
	if !closed(w.Done()) {
		t.Fatal("not concluded after every seed refused us repeatedly")
	}
	w2 := watcher(&fakeReplica{readErr: errors.New("no replica")}, false, errors.New("timeout"), true, &log)
	for range 2 * refusedChecksToConclude {
		w2.Check(context.Background())
	}
	if closed(w2.Done()) {
		t.Fatal("concluded from timeouts")
	}
}

func TestStaysUpWhenAsked(t *testing.T) {
	var log bytes.Buffer
	w := watcher(&fakeReplica{}, true, nil, false, &log)
	w.Check(context.Background())
	w.Check(context.Background())
	if closed(w.Done()) || !errors.Is(w.Err(), ErrRevoked) || strings.Count(log.String(), "level=ERROR") != 1 {
		t.Fatalf("done %v err %v log %q", closed(w.Done()), w.Err(), log.String())
	}
}
