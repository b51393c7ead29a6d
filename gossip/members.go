package gossip

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// view is the local membership view, fed by memberlist's event delegate.
// memberlist calls the delegates with its node lock held, so nothing here
// calls back into memberlist and nothing blocks.
type view struct {
	mu      sync.RWMutex
	members map[string]*Member
}

func newView() *view { return &view{members: make(map[string]*Member)} }

func (v *view) get(name string) (Member, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.members[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// alive reports whether the node is alive or suspect (still routed to).
func (v *view) alive(name string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.members[name]
	return ok && (m.Status == MemberAlive || m.Status == MemberSuspect)
}

// departed reports whether the node is known to be dead or gone.
func (v *view) departed(name string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	m, ok := v.members[name]
	return ok && (m.Status == MemberDead || m.Status == MemberLeft)
}

func (v *view) known(name string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.members[name]
	return ok
}

// set records a node's state and returns the member as stored.
func (v *view) set(n *memberlist.Node, status MemberStatus, now time.Time) (Member, bool) {
	meta, err := decodeMeta(n.Meta)
	v.mu.Lock()
	defer v.mu.Unlock()
	m, ok := v.members[n.Name]
	if !ok {
		m = &Member{Name: n.Name}
		v.members[n.Name] = m
	}
	if err == nil {
		m.Meta = meta
	}
	m.Addr = n.Address()
	if m.Status != status {
		m.Since = now
	}
	m.Status = status
	return *m, err == nil
}

func (v *view) list() []Member {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// prune forgets departed members older than cutoff and returns their names.
func (v *view) prune(cutoff time.Time) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var gone []string
	for name, m := range v.members {
		if (m.Status == MemberDead || m.Status == MemberLeft) && m.Since.Before(cutoff) {
			delete(v.members, name)
			gone = append(gone, name)
		}
	}
	return gone
}

// eventDelegate implements memberlist.EventDelegate.
type eventDelegate struct{ g *Gossip }

func (d eventDelegate) NotifyJoin(n *memberlist.Node) {
	g := d.g
	m, _ := g.view.set(n, MemberAlive, g.cfg.Clock.Now())
	g.fillLoad(&m)
	g.log.Debug("node joined", "peer", n.Name, "addr", m.Addr, "role", m.Meta.Role.String())
	g.hub.publish(Event{Type: EventJoin, Member: m, At: m.Since})
}

func (d eventDelegate) NotifyLeave(n *memberlist.Node) {
	g := d.g
	// memberlist passes a Node whose State field it does not maintain, so
	// a graceful leave is recognised by the leaving flag the node set in its
	// metadata just before leaving.
	status, typ := MemberDead, EventFail
	if meta, err := decodeMeta(n.Meta); err == nil && meta.Leaving {
		status, typ = MemberLeft, EventLeave
	}
	m, _ := g.view.set(n, status, g.cfg.Clock.Now())
	agents := g.table.drop(n.Name)
	if status == MemberDead {
		g.log.Info("node declared dead", "peer", n.Name, "addr", m.Addr, "agents", len(agents))
	} else {
		g.log.Info("node left", "peer", n.Name, "addr", m.Addr)
	}
	g.hub.publish(Event{Type: typ, Member: m, Agents: agents, At: m.Since})
}

func (d eventDelegate) NotifyUpdate(n *memberlist.Node) {
	g := d.g
	m, _ := g.view.set(n, MemberAlive, g.cfg.Clock.Now())
	g.fillLoad(&m)
	g.hub.publish(Event{Type: EventUpdate, Member: m, At: g.cfg.Clock.Now()})
}

// conflictDelegate implements memberlist.ConflictDelegate: memberlist already
// ignores the newcomer's alive message; we say so loudly.
type conflictDelegate struct{ g *Gossip }

func (d conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g.counters.conflicts.Add(1)
	d.g.log.Error("refused a node whose name is already used by a live node",
		"peer", existing.Name, "existing_addr", existing.Address(), "newcomer_addr", other.Address())
}

// aliveDelegate implements memberlist.AliveDelegate: a peer whose metadata
// does not decode, or whose SPIFFE id names another node, is not admitted.
type aliveDelegate struct{ g *Gossip }

func (d aliveDelegate) NotifyAlive(peer *memberlist.Node) error {
	meta, err := decodeMeta(peer.Meta)
	if err == nil && meta.SPIFFEID != "" && !strings.HasSuffix(meta.SPIFFEID, "/node/"+peer.Name) {
		err = fmt.Errorf("SPIFFE id %q does not name node %q", meta.SPIFFEID, peer.Name)
	}
	if err != nil {
		d.g.counters.badMeta.Add(1)
		return fmt.Errorf("node %s: %w", peer.Name, err)
	}
	return nil
}

// mergeDelegate implements memberlist.MergeDelegate. It runs on both sides of
// a join's state exchange, before anything is merged, and refuses the join
// when the two sides disagree on where a live node of one name is: that is
// two nodes with one name. The joining side records the conflict so Join can
// return ErrNameConflict instead of retrying.
type mergeDelegate struct{ g *Gossip }

func (d mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	g := d.g
	self := g.localAddr()
	for _, p := range peers {
		if p.State != memberlist.StateAlive && p.State != memberlist.StateSuspect {
			continue
		}
		var mine string
		if p.Name == g.cfg.Name {
			mine = self
		} else if m, ok := g.view.get(p.Name); ok && (m.Status == MemberAlive || m.Status == MemberSuspect) {
			mine = m.Addr
		}
		if mine == "" || mine == p.Address() {
			continue
		}
		g.counters.conflicts.Add(1)
		err := fmt.Errorf("%w: %q is alive at %s, not at %s", ErrNameConflict, p.Name, p.Address(), mine)
		if p.Name == g.cfg.Name {
			g.conflict.Store(&err)
		}
		g.log.Error("refusing to merge with a cluster that has another live node of the same name",
			"peer", p.Name, "their_addr", p.Address(), "our_addr", mine)
		return err
	}
	return nil
}
