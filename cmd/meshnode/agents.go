package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func newAgentsCmd() *cobra.Command {
	var cf *clientFlags
	var capability, nodeName string
	var consistent, all bool
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "List the agents registered in the cluster",
		Long: `List the agents registered in the cluster. STATUS is the same word discover
shows: ready, registered, draining, disconnected, revoked or unknown (its
node is not seen alive). Agents of a revoked node are kept for history and
shown only with --all.`,
		Example: `  meshnode agents
  meshnode agents --all                      # include revoked nodes' agents
  meshnode agents --capability inventory.lookup --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			req := &meshnodev1.ListAgentsRequest{Capability: capability, Node: nodeName}
			if consistent {
				req.Consistency = meshnodev1.Consistency_CONSISTENCY_CONSISTENT
			}
			resp, err := meshnodev1.NewRegistryServiceClient(conn).ListAgents(ctx, req)
			if err != nil {
				return rpcError("list agents", err, cf.socketPath())
			}
			var members map[string]string
			if mr, err := meshnodev1.NewNodeServiceClient(conn).Members(ctx, &meshnodev1.MembersRequest{}); err == nil {
				members = make(map[string]string, len(mr.GetMembers()))
				for _, m := range mr.GetMembers() {
					members[m.GetName()] = m.GetStatus()
				}
			}
			rows := agentRows(resp.GetAgents(), members, all)
			if cf.json {
				if !all {
					resp.Agents = resp.Agents[:0]
					for _, r := range rows {
						resp.Agents = append(resp.Agents, r.agent)
					}
				}
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tNODE\tSTATUS\tCAPABILITIES\tROLES")
			for _, r := range rows {
				a := r.agent
				var caps []string
				for _, c := range a.GetCapabilities() {
					caps = append(caps, c.GetName())
				}
				st := r.status
				if a.GetFlagged() {
					st += " (flagged)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.GetId(), a.GetNode(), st, strings.Join(caps, ","), strings.Join(a.GetRoles(), ","))
			}
			hidden := ""
			if n := len(resp.GetAgents()) - len(rows); n > 0 {
				hidden = fmt.Sprintf(", %d of revoked nodes hidden: --all shows them", n)
			}
			fmt.Fprintf(tw, "(%d agents at index %d%s)\n", len(rows), resp.GetIndex(), hidden)
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringVar(&capability, "capability", "", "only agents offering this capability")
	cmd.Flags().StringVar(&nodeName, "node", "", "only agents on this node")
	cmd.Flags().BoolVar(&consistent, "consistent", false, "read through the Raft leader instead of the local replica")
	cmd.Flags().BoolVar(&all, "all", false, "also list the agents of revoked nodes")
	cmd.AddCommand(newAgentsRemoveCmd())
	return cmd
}

func newDiscoverCmd() *cobra.Command {
	var cf *clientFlags
	var attrs map[string]string
	var minProf string
	cmd := &cobra.Command{
		Use:     "discover CAPABILITY",
		Short:   "Show which agents can serve a capability, with their load",
		Example: `  meshnode discover inventory.lookup --attr region=eu --min-proficiency expert`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prof, err := parseProficiency(minProf)
			if err != nil {
				return err
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			resp, err := meshnodev1.NewRegistryServiceClient(conn).Discover(ctx, &meshnodev1.DiscoverRequest{Capability: args[0], Attributes: attrs, MinProficiency: prof})
			if err != nil {
				return rpcError("discover", err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tNODE\tSTATUS\tPROFICIENCY\tCOST\tIN-FLIGHT\tLATENCY\tSUCCESS")
			for _, d := range resp.GetAgents() {
				l := d.GetLoad()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%d/%s\t%.1fms\t%.0f%%\n", d.GetAgent().GetId(), d.GetAgent().GetNode(), agentStatus(d.GetAgent(), l),
					strings.ToLower(strings.TrimPrefix(d.GetCapability().GetProficiency().String(), "PROFICIENCY_")), d.GetCapability().GetCost(),
					l.GetInFlight(), capacityString(l.GetCapacity()), l.GetEwmaLatencyMs(), 100*l.GetSuccessRate())
			}
			if len(resp.GetAgents()) == 0 {
				fmt.Fprintf(tw, "no agent offers %q\n", args[0])
			}
			return tw.Flush()
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringToStringVar(&attrs, "attr", nil, "required attribute key=value (repeatable)")
	cmd.Flags().StringVar(&minProf, "min-proficiency", "", "novice, experienced or expert")
	return cmd
}

func capacityString(c uint32) string {
	if c == 0 {
		return "∞"
	}
	return fmt.Sprint(c)
}

func parseProficiency(s string) (meshnodev1.Proficiency, error) {
	switch strings.ToLower(s) {
	case "":
		return meshnodev1.Proficiency_PROFICIENCY_UNSPECIFIED, nil
	case "novice":
		return meshnodev1.Proficiency_PROFICIENCY_NOVICE, nil
	case "experienced":
		return meshnodev1.Proficiency_PROFICIENCY_EXPERIENCED, nil
	case "expert":
		return meshnodev1.Proficiency_PROFICIENCY_EXPERT, nil
	}
	return 0, usagef("proficiency %q: use novice, experienced or expert", s)
}

func newCallCmd() *cobra.Command {
	var cf *clientFlags
	var data, contentType, idemKey, policy string
	var prefer []string
	var stream bool
	cmd := &cobra.Command{
		Use:   "call CAPABILITY",
		Short: "Call a capability and print the answer",
		Long: `Call a capability; the mesh picks the agent. --data takes the payload inline,
@FILE to read a file, or - to read standard input. The answer's payload is
printed to standard output; with --json the whole response is printed,
including which agent answered, the attempts made and the trace id, with a
JSON answer as JSON ("payloadEncoding": "json") and any other as base64
("payloadEncoding": "base64").

With the default --content-type application/json, --data must be JSON: a
string is quoted ('"hello"'); send other text with --content-type text/plain.

With --stream the capability answers as a stream (CallStream): each chunk is
written to standard output as it arrives, nothing added between chunks; with
--json each message is one JSON line. A stream that breaks after its first
chunk says on standard error which chunk was the last received.`,
		Example: `  meshnode call inventory.lookup --data '{"sku":"A-1"}'
  meshnode call demo.upper --data '"hello mesh"' --json
  meshnode call summarize --data @report.txt --content-type text/plain --timeout 2m
  echo hi | meshnode call echo --data - --content-type text/plain
  meshnode call llm.generate --stream --data '"tell me a story"' --timeout 5m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := readData(data, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := checkJSONData(payload, contentType); err != nil {
				return err
			}
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			req := &meshnodev1.CallRequest{
				Capability:     args[0],
				Payload:        payload,
				ContentType:    contentType,
				Deadline:       timestamppb.New(time.Now().Add(cf.timeout)),
				IdempotencyKey: idemKey,
			}
			if policy != "" || len(prefer) > 0 {
				req.Routing = &meshnodev1.RoutingOverrides{Policy: policy, PreferredAgentIds: prefer}
			}
			if stream {
				return streamCall(cmd, ctx, meshnodev1.NewInvokeServiceClient(conn), req, cf)
			}
			start := time.Now()
			resp, err := meshnodev1.NewInvokeServiceClient(conn).Call(ctx, req)
			if err != nil {
				return rpcError("call "+args[0], err, cf.socketPath())
			}
			if cf.json {
				return printCallJSON(cmd.OutOrStdout(), resp)
			}
			out := cmd.OutOrStdout()
			out.Write(resp.GetPayload())
			if len(resp.GetPayload()) > 0 && resp.GetPayload()[len(resp.GetPayload())-1] != '\n' {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "answered by %s on %s in %s, %d attempt(s), trace %s\n", resp.GetAgentId(), resp.GetNode(),
				time.Since(start).Round(time.Microsecond), resp.GetAttempts(), orDash(resp.GetTraceId()))
			return nil
		},
	}
	cf = addClientFlags(cmd)
	cmd.Flags().StringVar(&data, "data", "", "payload: inline text, @FILE, or - for standard input")
	cmd.Flags().StringVar(&contentType, "content-type", "application/json", "MIME type of the payload")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "makes the call safe to retry")
	cmd.Flags().StringVar(&policy, "policy", "", "routing policy for this call: round_robin, least_loaded, latency or cost")
	cmd.Flags().StringSliceVar(&prefer, "prefer", nil, "agent ids to use first")
	cmd.Flags().BoolVar(&stream, "stream", false, "read the answer as a stream of chunks, printed as they arrive")
	return cmd
}

// isJSONType reports whether a MIME type is JSON.
func isJSONType(ct string) bool {
	ct, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(ct)), ";")
	return ct == "application/json" || strings.HasSuffix(ct, "+json")
}

// checkJSONData refuses a payload declared JSON that is not, before it
// reaches an agent that would fail on it.
func checkJSONData(payload []byte, contentType string) error {
	if len(payload) == 0 || !isJSONType(contentType) {
		return nil
	}
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return usagef("--data is not valid JSON (%v): quote a string as '\"text\"', or send other text with --content-type text/plain", err)
	}
	return nil
}

// printCallJSON prints a call's response as protojson does, except that a
// JSON answer is shown as JSON rather than base64; payloadEncoding says which.
func printCallJSON(w io.Writer, resp *meshnodev1.CallResponse) error {
	b, err := jsonOut.Marshal(resp)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	fields["payloadEncoding"] = json.RawMessage(`"base64"`)
	p := resp.GetPayload()
	if (resp.GetContentType() == "" || isJSONType(resp.GetContentType())) && len(p) > 0 && json.Valid(p) {
		fields["payload"] = json.RawMessage(p)
		fields["payloadEncoding"] = json.RawMessage(`"json"`)
	}
	out, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readData resolves --data: inline, @file or - (stdin).
func readData(spec string, stdin io.Reader) ([]byte, error) {
	switch {
	case spec == "-":
		return io.ReadAll(stdin)
	case strings.HasPrefix(spec, "@"):
		b, err := os.ReadFile(spec[1:])
		if err != nil {
			return nil, usagef("--data %s: %v", spec, err)
		}
		return b, nil
	}
	return []byte(spec), nil
}
