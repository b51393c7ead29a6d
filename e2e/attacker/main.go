// Command attacker is a modified meshnode client for the e2e tests: it
// holds a real client node's certificate (read from that node's data dir)
// and uses it the way a compromised host would, outside the rules the real
// binary follows. It speaks raw Raft to the servers, and forwards admin
// writes with a forged origin straight to the servers' write endpoint. It
// prints one JSON line per attempt and exits 0; the test decides.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
)

// Attempt is one line of output.
type Attempt struct {
	Attack  string `json:"attack"`
	Target  string `json:"target"`
	Refused bool   `json:"refused"`
	Detail  string `json:"detail"`
}

func main() {
	dataDir := flag.String("data-dir", "", "the compromised client's data dir")
	bind := flag.String("bind", "127.0.0.1:0", "UDP address to send from")
	targets := flag.String("targets", "", "name=host:port of each server, comma-separated")
	victim := flag.String("victim", "", "a server to revoke and deregister")
	flag.Parse()
	if err := run(*dataDir, *bind, *targets, *victim); err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		os.Exit(1)
	}
}

func run(dataDir, bind, targets, victim string) error {
	creds, err := pki.LoadCredentials(dataDir)
	if err != nil {
		return err
	}
	id, err := creds.ID()
	if err != nil {
		return err
	}
	keeper := pki.NewKeeper(dataDir, creds)
	src, err := pki.NewTLSSource(pki.TLSSourceConfig{TrustDomain: id.TrustDomain, Roots: keeper.Roots, Certificate: keeper.Certificate})
	if err != nil {
		return err
	}
	cfg := transport.DefaultConfig()
	cfg.BindAddr, cfg.TLS = bind, src
	ep, err := transport.Listen(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer ep.Close()
	out := json.NewEncoder(os.Stdout)
	trans := raft.NewNetworkTransport(ep.RaftLayer(), 1, 3*time.Second, io.Discard)
	defer trans.Close()
	for _, t := range strings.Split(targets, ",") {
		name, addr, _ := strings.Cut(t, "=")
		out.Encode(raftAttack(trans, id.Node, ep.Addr().String(), name, addr, victim))
		for _, a := range forwardedAttacks(ep, id.Node, name, addr, victim) {
			out.Encode(a)
		}
	}
	return nil
}

// raftAttack appends, with a term far ahead, a CA record of its own, the
// victim's revocation and itself as a voter.
func raftAttack(trans *raft.NetworkTransport, self, selfAddr, name, addr, victim string) Attempt {
	batch, _ := proto.Marshal(&meshnodev1.CommandBatch{Version: consensus.CommandVersion, TimeUnixNano: time.Now().UnixNano(), Commands: []*meshnodev1.Command{
		{Version: consensus.CommandVersion, IdempotencyKey: "a1", Origin: name, Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{Record: &meshnodev1.CARecord{Key: "ca/material", Value: []byte("mine")}}}},
		{Version: consensus.CommandVersion, IdempotencyKey: "a2", Origin: name, Op: &meshnodev1.Command_Revoke{Revoke: &meshnodev1.RevokeCommand{Node: victim, Reason: "takeover"}}},
	}})
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(self), Address: raft.ServerAddress(selfAddr)}}})
	term := uint64(1 << 20)
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: []byte(selfAddr)},
		Term:      term, LeaderCommitIndex: 1 << 40,
		Entries: []*raft.Log{{Index: 1, Term: term, Type: raft.LogCommand, Data: batch}, {Index: 2, Term: term, Type: raft.LogConfiguration, Data: conf}},
	}
	var resp raft.AppendEntriesResponse
	err := trans.AppendEntries(raft.ServerID(name), raft.ServerAddress(addr), req, &resp)
	if err != nil {
		return Attempt{Attack: "raft append-entries", Target: name, Refused: true, Detail: err.Error()}
	}
	return Attempt{Attack: "raft append-entries", Target: name, Detail: fmt.Sprintf("answered: term %d success %v", resp.Term, resp.Success)}
}

// forwardedAttacks sends admin writes to a server's write endpoint with
// the origin forged as that server.
func forwardedAttacks(ep *transport.Endpoint, self, name, addr, victim string) []Attempt {
	cmds := map[string]*meshnodev1.Command{
		"revoke a server":        {Op: &meshnodev1.Command_Revoke{Revoke: &meshnodev1.RevokeCommand{Node: victim, Reason: "takeover"}}},
		"deregister a server":    {Op: &meshnodev1.Command_DeregisterNode{DeregisterNode: &meshnodev1.DeregisterNodeCommand{Name: victim}}},
		"set a policy":           {Op: &meshnodev1.Command_PutPolicy{PutPolicy: &meshnodev1.PutPolicyCommand{Policy: &meshnodev1.PolicyRecord{Key: "e2e.attack", Policy: []byte{}}}}},
		"replace the CA record":  {Op: &meshnodev1.Command_PutCaRecord{PutCaRecord: &meshnodev1.PutCARecordCommand{Record: &meshnodev1.CARecord{Key: "ca/material", Value: []byte("mine")}}}},
		"admit itself as server": {Op: &meshnodev1.Command_AdmitServer{AdmitServer: &meshnodev1.AdmitServerCommand{Node: self}}},
		"take a server's record": {Op: &meshnodev1.Command_RegisterNode{RegisterNode: &meshnodev1.RegisterNodeCommand{Node: &meshnodev1.NodeRecord{Name: victim, Address: "127.0.0.1:1"}}}},
	}
	var out []Attempt
	for what, c := range cmds {
		c.Version, c.Origin, c.IdempotencyKey = consensus.CommandVersion, name, "attack/"+what
		body, _ := proto.Marshal(&meshnodev1.ForwardApplyRequest{Commands: []*meshnodev1.Command{c}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := ep.Call(ctx, addr, consensus.MethodApply, body)
		cancel()
		a := Attempt{Attack: "forwarded " + what, Target: name}
		resp := &meshnodev1.ForwardApplyResponse{}
		switch {
		case err != nil:
			a.Refused, a.Detail = true, err.Error()
		case proto.Unmarshal(b, resp) != nil || len(resp.GetResults()) != 1:
			a.Detail = "unreadable answer"
		default:
			r := resp.GetResults()[0]
			a.Refused = r.GetStatus() != meshnodev1.CommandStatus_COMMAND_STATUS_OK
			a.Detail = r.GetStatus().String() + ": " + r.GetMessage()
		}
		out = append(out, a)
	}
	return out
}
