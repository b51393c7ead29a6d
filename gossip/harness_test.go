package gossip

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// keyring is a KeyResolver over a map, as the node backs it with certificates.
type keyring struct {
	mu   sync.RWMutex
	keys map[string]crypto.PublicKey
}

func newKeyring() *keyring { return &keyring{keys: make(map[string]crypto.PublicKey)} }

func (k *keyring) NodePublicKey(n string) (crypto.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	p, ok := k.keys[n]
	return p, ok
}

func (k *keyring) add(n string, p crypto.PublicKey) {
	k.mu.Lock()
	k.keys[n] = p
	k.mu.Unlock()
}

// owners is an AgentOwners over a map, as the node backs it with the registry.
type owners struct {
	mu sync.RWMutex
	m  map[string]string
}

func (o *owners) AgentNode(id string) (string, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	n, ok := o.m[id]
	return n, ok
}

func newSigner(tb testing.TB, ed bool) crypto.Signer {
	tb.Helper()
	if ed {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// transportKind selects what carries gossip in a harness.
type transportKind int

const (
	overQUIC transportKind = iota // the product's transport (transport.Endpoint)
	overUDP                       // memberlist's NetTransport (baseline only)
)

// harness runs many Gossip nodes in one process on 127.0.0.1.
type harness struct {
	tb      testing.TB
	kind    transportKind
	keys    *keyring
	owners  *owners
	base    Config
	mu      sync.Mutex
	signers map[string]crypto.Signer
	nodes   map[string]*Gossip
	eps     map[string]*transport.Endpoint
	logger  *slog.Logger
	// epLogger, if set, replaces the test logger of QUIC endpoints.
	epLogger *slog.Logger
}

func newHarness(tb testing.TB, kind transportKind, base Config) *harness {
	h := &harness{
		tb: tb, kind: kind, keys: newKeyring(), owners: &owners{m: map[string]string{}},
		base: base, signers: map[string]crypto.Signer{}, nodes: map[string]*Gossip{},
		eps: map[string]*transport.Endpoint{}, logger: transporttest.Logger(tb),
	}
	tb.Cleanup(h.closeAll)
	return h
}

func (h *harness) closeAll() {
	h.mu.Lock()
	nodes := h.nodes
	h.nodes = map[string]*Gossip{}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range nodes {
		wg.Go(func() { g.Shutdown() })
	}
	wg.Wait()
}

// endpoint creates (or returns) the QUIC endpoint a node name will use, so a
// seed's address can be known before its gossip starts.
func (h *harness) endpoint(name string) *transport.Endpoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ep, ok := h.eps[name]; ok {
		return ep
	}
	ep := transporttest.NewEndpointConfig(h.tb, name, transport.Config{Logger: h.epLogger})
	h.eps[name] = ep
	return ep
}

// start creates node name (reusing its key across restarts).
func (h *harness) start(name string, mod ...func(*Config)) *Gossip {
	h.tb.Helper()
	g, err := h.tryStart(name, mod...)
	if err != nil {
		h.tb.Fatalf("starting %s: %v", name, err)
	}
	return g
}

func (h *harness) tryStart(name string, mod ...func(*Config)) (*Gossip, error) {
	h.mu.Lock()
	signer, ok := h.signers[name]
	if !ok {
		signer = newSigner(h.tb, len(h.signers)%2 == 0) // mix ed25519 and ECDSA P-256
		h.signers[name] = signer
		h.keys.add(name, signer.Public())
	}
	h.mu.Unlock()
	cfg := h.base
	cfg.Name, cfg.Signer, cfg.Keys, cfg.Owners = name, signer, h.keys, h.owners
	cfg.Logger = h.logger.With("node", name)
	cfg.Meta = NodeMeta{Role: RoleClient, Version: "test", SPIFFEID: "spiffe://" + transporttest.TrustDomain + "/node/" + name}
	if h.kind == overQUIC {
		ep := h.endpoint(name)
		cfg.Transport = ep.Memberlist()
		cfg.Meta.QUICAddr = ep.Addr().String()
	}
	for _, m := range mod {
		m(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.nodes[name] = g
	h.mu.Unlock()
	return g, nil
}

// kill stops a node without a leave message and closes its endpoint, as a crash.
func (h *harness) kill(name string) {
	h.mu.Lock()
	g, ep := h.nodes[name], h.eps[name]
	delete(h.nodes, name)
	delete(h.eps, name)
	h.mu.Unlock()
	g.Shutdown()
	if ep != nil {
		ep.Close()
	}
}

func (h *harness) live() []*Gossip {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Gossip, 0, len(h.nodes))
	for _, g := range h.nodes {
		out = append(out, g)
	}
	return out
}

// cluster starts n nodes named prefix0..prefixN-1, all joining the first.
func (h *harness) cluster(prefix string, n int) []*Gossip {
	h.tb.Helper()
	nodes := make([]*Gossip, n)
	nodes[0] = h.start(prefix + "0")
	seed := []string{nodes[0].Addr()}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		nodes[i] = h.start(fmt.Sprintf("%s%d", prefix, i))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := nodes[i].Join(ctx, seed); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.tb.Fatal(err)
	}
	return nodes
}

// converged reports whether every live node sees exactly the live set alive.
func (h *harness) converged() bool {
	live := h.live()
	for _, g := range live {
		if g.NumAlive() != len(live) {
			return false
		}
		for _, o := range live {
			if !g.NodeAlive(o.cfg.Name) {
				return false
			}
		}
	}
	return true
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// inject queues raw bytes in g's gossip as if g had something to say: the
// way a malicious member would inject a message.
func inject(g *Gossip, name string, raw []byte) {
	g.queue.QueueBroadcast(&broadcast{name: name, msg: raw})
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)
