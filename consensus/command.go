package consensus

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// CommandVersion is the command and batch format this build writes and
// accepts. A node refuses any other version rather than guess at it.
const CommandVersion = 1

// Limits on command fields. They bound what one command can make the state
// machine store; larger values are refused before they reach the log.
const (
	maxIDLen         = 512
	maxCapNameLen    = 128
	maxBlobLen       = 1 << 20
	maxBatchCommands = 4096
)

// DecodeCommand parses and validates one command from untrusted bytes.
func DecodeCommand(b []byte) (*meshnodev1.Command, error) {
	c := new(meshnodev1.Command)
	if err := proto.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%w: decoding command: %v", ErrInvalidCommand, err)
	}
	if err := ValidateCommand(c); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeBatch parses a Raft log entry. It validates the envelope only: each
// command is validated when applied, so a bad command fails identically on
// every replica instead of failing the whole entry.
func decodeBatch(b []byte) (*meshnodev1.CommandBatch, error) {
	batch := new(meshnodev1.CommandBatch)
	if err := proto.Unmarshal(b, batch); err != nil {
		return nil, fmt.Errorf("%w: decoding log entry: %v", ErrInvalidCommand, err)
	}
	if batch.GetVersion() != CommandVersion {
		return nil, fmt.Errorf("%w: log entry version %d, this node understands %d: upgrade it",
			ErrUnknownVersion, batch.GetVersion(), CommandVersion)
	}
	if len(batch.GetCommands()) > maxBatchCommands {
		return nil, fmt.Errorf("%w: log entry has %d commands, limit %d", ErrInvalidCommand, len(batch.GetCommands()), maxBatchCommands)
	}
	return batch, nil
}

// ValidateCommand checks a command's version and fields. The leader runs it
// before proposing, and the state machine runs it again when applying.
func ValidateCommand(c *meshnodev1.Command) error {
	if c == nil {
		return fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	if c.GetVersion() != CommandVersion {
		return fmt.Errorf("%w: command version %d, this node understands %d: upgrade the node that sent it",
			ErrUnknownVersion, c.GetVersion(), CommandVersion)
	}
	if len(c.GetIdempotencyKey()) > maxIDLen {
		return invalid("idempotency_key longer than %d bytes", maxIDLen)
	}
	switch op := c.GetOp().(type) {
	case *meshnodev1.Command_RegisterNode:
		n := op.RegisterNode.GetNode()
		return errors.Join(checkID("register_node.node.name", n.GetName()), checkBlob("register_node.node.public_key", n.GetPublicKey()))
	case *meshnodev1.Command_DeregisterNode:
		return checkID("deregister_node.name", op.DeregisterNode.GetName())
	case *meshnodev1.Command_RegisterAgent:
		return validateAgent(op.RegisterAgent.GetAgent())
	case *meshnodev1.Command_DeregisterAgent:
		return checkID("deregister_agent.id", op.DeregisterAgent.GetId())
	case *meshnodev1.Command_SetAgentStatus:
		s := op.SetAgentStatus.GetStatus()
		if s <= meshnodev1.AgentStatus_AGENT_STATUS_UNSPECIFIED || s > meshnodev1.AgentStatus_AGENT_STATUS_DISCONNECTED {
			return invalid("set_agent_status.status %d is not a known status", s)
		}
		return checkID("set_agent_status.id", op.SetAgentStatus.GetId())
	case *meshnodev1.Command_FlagAgent:
		return errors.Join(checkID("flag_agent.id", op.FlagAgent.GetId()), checkLen("flag_agent.reason", op.FlagAgent.GetReason()))
	case *meshnodev1.Command_ClearFlag:
		return checkID("clear_flag.id", op.ClearFlag.GetId())
	case *meshnodev1.Command_PutPolicy:
		p := op.PutPolicy.GetPolicy()
		return errors.Join(checkID("put_policy.policy.key", p.GetKey()), checkBlob("put_policy.policy.policy", p.GetPolicy()))
	case *meshnodev1.Command_DeletePolicy:
		return checkID("delete_policy.key", op.DeletePolicy.GetKey())
	case *meshnodev1.Command_PutCaRecord:
		r := op.PutCaRecord.GetRecord()
		return errors.Join(checkID("put_ca_record.record.key", r.GetKey()), checkBlob("put_ca_record.record.value", r.GetValue()))
	case *meshnodev1.Command_UseToken:
		if op.UseToken.GetExpiresUnixNano() == 0 {
			return invalid("use_token.expires_unix_nano is required")
		}
		return errors.Join(checkID("use_token.id", op.UseToken.GetId()), checkLen("use_token.server_node", op.UseToken.GetServerNode()))
	case *meshnodev1.Command_Revoke:
		r := op.Revoke
		errs := []error{checkID("revoke.node", r.GetNode()), checkLen("revoke.reason", r.GetReason()), checkBlob("revoke.data", r.GetData())}
		if len(r.GetSerials()) > 1024 {
			return invalid("revoke.serials has %d entries, limit 1024", len(r.GetSerials()))
		}
		for _, s := range r.GetSerials() {
			errs = append(errs, checkID("revoke.serials[]", s))
		}
		return errors.Join(errs...)
	case *meshnodev1.Command_AdmitServer:
		return checkID("admit_server.node", op.AdmitServer.GetNode())
	case *meshnodev1.Command_PutDecision:
		d := op.PutDecision.GetDecision()
		return errors.Join(checkID("put_decision.decision.id", d.GetId()),
			checkID("put_decision.decision.status", d.GetStatus()), checkBlob("put_decision.decision.decision", d.GetDecision()))
	case *meshnodev1.Command_PutTrustBundle:
		if op.PutTrustBundle.GetBundle() == nil {
			return invalid("put_trust_bundle.bundle is required")
		}
		return nil
	case *meshnodev1.Command_Admin:
		if op.Admin.GetSignature() == nil {
			return invalid("admin.signature is required")
		}
		_, _, err := AdminRequest(op.Admin)
		return err
	case nil:
		return invalid("command has no operation")
	default:
		return invalid("unknown operation %T", op)
	}
}

func validateAgent(a *meshnodev1.Agent) error {
	if a == nil {
		return invalid("register_agent.agent is required")
	}
	errs := []error{checkID("register_agent.agent.id", a.GetId()), checkID("register_agent.agent.node", a.GetNode()),
		checkLen("register_agent.agent.name", a.GetName()), checkBlob("register_agent.agent.vote_public_key", a.GetVotePublicKey())}
	if len(a.GetCapabilities()) > 256 {
		errs = append(errs, invalid("register_agent.agent.capabilities has %d entries, limit 256", len(a.GetCapabilities())))
	}
	for _, c := range a.GetCapabilities() {
		n := c.GetName()
		if n == "" || len(n) > maxCapNameLen || strings.ContainsAny(n, " \t\r\n") {
			errs = append(errs, invalid("capability name %q must be 1-%d bytes without spaces", n, maxCapNameLen))
		}
		if math.IsNaN(c.GetCost()) || c.GetCost() < 0 {
			errs = append(errs, invalid("capability %q: cost must be a non-negative number", n))
		}
	}
	return errors.Join(errs...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}

func checkID(field, v string) error {
	if v == "" {
		return invalid("%s is required", field)
	}
	return checkLen(field, v)
}

func checkLen(field, v string) error {
	if len(v) > maxIDLen {
		return invalid("%s is longer than %d bytes", field, maxIDLen)
	}
	if !utf8.ValidString(v) {
		return invalid("%s is not valid UTF-8", field)
	}
	return nil
}

func checkBlob(field string, v []byte) error {
	if len(v) > maxBlobLen {
		return invalid("%s is larger than %d bytes", field, maxBlobLen)
	}
	return nil
}
