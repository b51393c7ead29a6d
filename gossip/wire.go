package gossip

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Wire format of a memberlist user message (NotifyMsg / GetBroadcasts):
//
//	msgLoad (1 byte) | GossipSignedBatch (protobuf)
//
// and of the push/pull user state (LocalState / MergeRemoteState):
//
//	stateV1 (1 byte) | GossipState (protobuf)
//
// The leading byte lets later versions add message kinds; unknown kinds are
// dropped and counted as undecodable.
const (
	msgLoad byte = 1
	stateV1 byte = 1
)

// signContext separates load signatures from anything else the node key signs.
const signContext = "meshnode/gossip/load/v1\x00"

// Decoding limits for untrusted messages (beyond the byte-size bound).
const (
	maxNameLen    = 128
	maxAgentIDLen = 256
	maxParts      = 4096
	ppm           = 1_000_000
)

var (
	errUndecodable = errors.New("undecodable gossip message")
	errOversized   = errors.New("oversized gossip message")
)

// signedBatch is a decoded, not yet verified, load message.
type signedBatch struct {
	raw   []byte // the whole user message as relayed (kind byte included)
	batch *meshnodev1.GossipLoadBatch
	body  []byte // the signed bytes (marshalled batch)
	sig   []byte
}

// decodeMessage decodes one user message of at most maxSize bytes. It checks
// structure only; the signature is checked by verify.
func decodeMessage(b []byte, maxSize int) (*signedBatch, error) {
	if len(b) > maxSize+1 {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errOversized, len(b), maxSize+1)
	}
	if len(b) == 0 || b[0] != msgLoad {
		return nil, fmt.Errorf("%w: unknown message kind", errUndecodable)
	}
	raw := append([]byte(nil), b...) // memberlist reuses its buffer
	var sb meshnodev1.GossipSignedBatch
	if err := proto.Unmarshal(raw[1:], &sb); err != nil {
		return nil, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	return decodeSigned(raw, &sb)
}

func decodeSigned(raw []byte, sb *meshnodev1.GossipSignedBatch) (*signedBatch, error) {
	if len(sb.GetSignature()) == 0 || len(sb.GetSignature()) > 128 {
		return nil, fmt.Errorf("%w: bad signature length %d", errUndecodable, len(sb.GetSignature()))
	}
	var batch meshnodev1.GossipLoadBatch
	if err := proto.Unmarshal(sb.GetBatch(), &batch); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", errUndecodable, err)
	}
	if err := checkBatch(&batch); err != nil {
		return nil, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	return &signedBatch{raw: raw, batch: &batch, body: sb.GetBatch(), sig: sb.GetSignature()}, nil
}

func checkBatch(b *meshnodev1.GossipLoadBatch) error {
	if err := validNodeName(b.GetNode()); err != nil {
		return err
	}
	if b.GetParts() == 0 || b.GetParts() > maxParts || b.GetPart() >= b.GetParts() {
		return fmt.Errorf("part %d of %d", b.GetPart(), b.GetParts())
	}
	if b.GetSeq() == 0 || b.GetLayoutSeq() == 0 || b.GetLayoutSeq() > b.GetSeq() {
		return fmt.Errorf("seq %d, layout seq %d", b.GetSeq(), b.GetLayoutSeq())
	}
	if b.GetNodeLoad().GetSuccessPpm() > ppm {
		return fmt.Errorf("node success rate %d ppm", b.GetNodeLoad().GetSuccessPpm())
	}
	seen := make(map[string]struct{}, len(b.GetAgents()))
	for _, a := range b.GetAgents() {
		if a.GetAgentId() == "" || len(a.GetAgentId()) > maxAgentIDLen {
			return fmt.Errorf("agent id of %d bytes", len(a.GetAgentId()))
		}
		if a.GetSuccessPpm() > ppm {
			return fmt.Errorf("agent %q success rate %d ppm", a.GetAgentId(), a.GetSuccessPpm())
		}
		if _, dup := seen[a.GetAgentId()]; dup {
			return fmt.Errorf("agent %q listed twice", a.GetAgentId())
		}
		seen[a.GetAgentId()] = struct{}{}
	}
	return nil
}

func validNodeName(n string) error {
	if n == "" || len(n) > maxNameLen {
		return fmt.Errorf("node name must be 1 to %d bytes, got %d", maxNameLen, len(n))
	}
	return nil
}

// encodeMessage marshals and signs batch into a user message.
func encodeMessage(signer crypto.Signer, batch *meshnodev1.GossipLoadBatch) (*signedBatch, error) {
	body, err := proto.Marshal(batch)
	if err != nil {
		return nil, fmt.Errorf("marshalling load batch of node %s: %w", batch.GetNode(), err)
	}
	sig, err := sign(signer, body)
	if err != nil {
		return nil, fmt.Errorf("signing load batch of node %s: %w", batch.GetNode(), err)
	}
	sb := &meshnodev1.GossipSignedBatch{Batch: body, Signature: sig}
	raw := make([]byte, 1, 1+proto.Size(sb))
	raw[0] = msgLoad
	raw, err = proto.MarshalOptions{}.MarshalAppend(raw, sb)
	if err != nil {
		return nil, fmt.Errorf("marshalling signed batch of node %s: %w", batch.GetNode(), err)
	}
	return &signedBatch{raw: raw, batch: batch, body: body, sig: sig}, nil
}

func sign(signer crypto.Signer, body []byte) ([]byte, error) {
	msg := append([]byte(signContext), body...)
	switch signer.Public().(type) {
	case ed25519.PublicKey:
		return signer.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return signer.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("unsupported key type %T", signer.Public())
}

// verify checks sb's signature with pub. The algorithm follows from pub's
// type, never from the message.
func verify(pub crypto.PublicKey, sb *signedBatch) bool {
	msg := append([]byte(signContext), sb.body...)
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sb.sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sb.sig)
	}
	return false
}

// sigSize is the largest signature pub's algorithm produces.
func sigSize(pub crypto.PublicKey) int {
	if _, ok := pub.(ed25519.PublicKey); ok {
		return ed25519.SignatureSize
	}
	return 72 // ASN.1 ECDSA P-256 at most
}

// encodeState marshals the push/pull payload.
func encodeState(batches [][]byte) []byte {
	st := &meshnodev1.GossipState{Batches: make([]*meshnodev1.GossipSignedBatch, 0, len(batches))}
	for _, raw := range batches {
		var sb meshnodev1.GossipSignedBatch
		if proto.Unmarshal(raw[1:], &sb) == nil { // our own stored messages: cannot fail
			st.Batches = append(st.Batches, &sb)
		}
	}
	out := []byte{stateV1}
	out, _ = proto.MarshalOptions{}.MarshalAppend(out, st)
	return out
}

// decodeState decodes a push/pull payload into individually decoded batches.
// A structurally bad batch is reported in bad and skipped; a bad envelope
// fails the whole state.
func decodeState(b []byte, maxState, maxMsg int) (batches []*signedBatch, bad int, err error) {
	if len(b) > maxState {
		return nil, 0, fmt.Errorf("%w: state of %d bytes, limit %d", errOversized, len(b), maxState)
	}
	if len(b) == 0 || b[0] != stateV1 {
		return nil, 0, fmt.Errorf("%w: unknown state version", errUndecodable)
	}
	var st meshnodev1.GossipState
	if err := proto.Unmarshal(b[1:], &st); err != nil {
		return nil, 0, fmt.Errorf("%w: state: %v", errUndecodable, err)
	}
	for _, sb := range st.GetBatches() {
		raw := make([]byte, 1, 1+proto.Size(sb))
		raw[0] = msgLoad
		raw, _ = proto.MarshalOptions{}.MarshalAppend(raw, sb)
		if len(raw) > maxMsg+1 {
			bad++
			continue
		}
		d, err := decodeSigned(raw, sb)
		if err != nil {
			bad++
			continue
		}
		batches = append(batches, d)
	}
	return batches, bad, nil
}

// Conversions between the wire and the API.

func statusToWire(s Status) meshnodev1.GossipLoadStatus {
	switch s {
	case StatusReady:
		return meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_READY
	case StatusDraining:
		return meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_DRAINING
	case StatusRestarting:
		return meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_RESTARTING
	}
	return meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_UNSPECIFIED
}

func statusFromWire(s meshnodev1.GossipLoadStatus) Status {
	switch s {
	case meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_READY:
		return StatusReady
	case meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_DRAINING:
		return StatusDraining
	case meshnodev1.GossipLoadStatus_GOSSIP_LOAD_STATUS_RESTARTING:
		return StatusRestarting
	}
	return StatusUnknown
}

func durToMicros(d time.Duration) uint32 {
	us := d.Microseconds()
	if us < 0 {
		return 0
	}
	if us > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(us)
}

func rateToPPM(r float64) uint32 {
	if !(r > 0) { // also NaN
		return 0
	}
	if r >= 1 {
		return ppm
	}
	return uint32(math.Round(r * ppm))
}

func nodeLoadToWire(l NodeLoad) *meshnodev1.GossipNodeLoad {
	return &meshnodev1.GossipNodeLoad{
		InFlight: l.InFlight, Capacity: l.Capacity, EwmaLatencyUs: durToMicros(l.EWMALatency),
		SuccessPpm: rateToPPM(l.SuccessRate), Status: statusToWire(l.Status),
	}
}

func nodeLoadFromWire(w *meshnodev1.GossipNodeLoad) NodeLoad {
	return NodeLoad{
		InFlight: w.GetInFlight(), Capacity: w.GetCapacity(),
		EWMALatency: time.Duration(w.GetEwmaLatencyUs()) * time.Microsecond,
		SuccessRate: float64(w.GetSuccessPpm()) / ppm, Status: statusFromWire(w.GetStatus()),
	}
}

func agentLoadToWire(a AgentLoad) *meshnodev1.GossipAgentLoad {
	return &meshnodev1.GossipAgentLoad{
		AgentId: a.AgentID, InFlight: a.InFlight, Capacity: a.Capacity,
		EwmaLatencyUs: durToMicros(a.EWMALatency), SuccessPpm: rateToPPM(a.SuccessRate),
		Status: statusToWire(a.Status),
	}
}

func agentLoadFromWire(w *meshnodev1.GossipAgentLoad, node string, seq uint64) AgentLoad {
	return AgentLoad{
		AgentID: w.GetAgentId(), InFlight: w.GetInFlight(), Capacity: w.GetCapacity(),
		EWMALatency: time.Duration(w.GetEwmaLatencyUs()) * time.Microsecond,
		SuccessRate: float64(w.GetSuccessPpm()) / ppm, Status: statusFromWire(w.GetStatus()),
		Node: node, Seq: seq,
	}
}

// Node metadata.

func encodeMeta(m NodeMeta) []byte {
	w := &meshnodev1.GossipNodeMeta{QuicAddress: m.QUICAddr, Version: m.Version, SpiffeId: m.SPIFFEID, Leaving: m.Leaving}
	switch m.Role {
	case RoleServer:
		w.Role = meshnodev1.GossipRole_GOSSIP_ROLE_SERVER
	case RoleClient:
		w.Role = meshnodev1.GossipRole_GOSSIP_ROLE_CLIENT
	}
	b, _ := proto.Marshal(w)
	return b
}

// decodeMeta decodes a peer's metadata (untrusted, at most 512 bytes).
func decodeMeta(b []byte) (NodeMeta, error) {
	if len(b) > 512 {
		return NodeMeta{}, fmt.Errorf("%w: metadata of %d bytes", errOversized, len(b))
	}
	var w meshnodev1.GossipNodeMeta
	if err := proto.Unmarshal(b, &w); err != nil {
		return NodeMeta{}, fmt.Errorf("%w: metadata: %v", errUndecodable, err)
	}
	m := NodeMeta{QUICAddr: w.GetQuicAddress(), Version: w.GetVersion(), SPIFFEID: w.GetSpiffeId(), Leaving: w.GetLeaving()}
	switch w.GetRole() {
	case meshnodev1.GossipRole_GOSSIP_ROLE_SERVER:
		m.Role = RoleServer
	case meshnodev1.GossipRole_GOSSIP_ROLE_CLIENT:
		m.Role = RoleClient
	}
	if err := m.validate(); err != nil {
		return NodeMeta{}, fmt.Errorf("%w: metadata: %v", errUndecodable, err)
	}
	return m, nil
}
