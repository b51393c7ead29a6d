package gossip

import (
	"math/rand/v2"
)

// Reconnect tries, once, to rejoin one member that failure detection
// declared dead (not one that left). memberlist stops gossiping to dead
// nodes after GossipToTheDeadTime, so after a partition longer than that
// the two sides would never find each other again; like Serf's reconnect
// loop, the node calls this periodically. It returns how many members
// answered (0 when none was dead or the pick did not answer).
func (g *Gossip) Reconnect() (int, error) {
	var dead []Member
	for _, m := range g.Members() {
		if m.Status == MemberDead && m.Addr != "" && m.Name != g.cfg.Name {
			dead = append(dead, m)
		}
	}
	if len(dead) == 0 {
		return 0, nil
	}
	m := dead[rand.IntN(len(dead))]
	n, err := g.ml.Join([]string{m.Addr})
	if n > 0 {
		g.log.Info("reconnected to a member declared dead", "member", m.Name, "addr", m.Addr)
	}
	return n, err
}

// ReconnectTo tries, once, to join through one of addrs, picked at random:
// nodes the caller knows of (the registry) that this view no longer holds.
// Dead members are pruned after DepartedRetention, so after a partition
// longer than that Reconnect has no one left to try; the registry still
// lists every node. It returns how many answered.
func (g *Gossip) ReconnectTo(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	addr := addrs[rand.IntN(len(addrs))]
	n, err := g.ml.Join([]string{addr})
	if n > 0 {
		g.log.Info("reconnected through a registered node this view had lost", "addr", addr)
	}
	return n, err
}
