package boundary

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/agentmesh/meshnode/"

// forbidden is the "must not import" column of the design's layout table.
// The check is transitive: a package may not reach a forbidden one through
// a third.
var forbidden = map[string][]string{
	"transport":         {"node", "consensus", "gossip"},
	"pki":               {"node", "transport", "consensus"},
	"consensus":         {"node", "routing"},
	"gossip":            {"node", "consensus"},
	"routing":           {"node"},
	"quorum":            {"node", "transport"},
	"proto/meshnode/v1": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent", "cmd/meshnode"},
	"agent":             {"node", "transport", "consensus", "gossip", "routing", "pki"},
	// Benchmark helpers stand outside the product: they see only the API.
	"internal/benchutil": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent"},
	// Shared by the node and the agent SDK's fake node: it may depend on neither.
	"internal/connectjson": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent"},
	// The one atomic file writer: pki and the agent SDK use it, so it may
	// depend on nothing of the product.
	"internal/atomicfile": {"agent", "bench", "cmd", "consensus", "e2e", "examples", "gossip", "internal", "node", "pki", "proto", "quorum", "routing", "transport"},
	// The agent hub is shared by the node and the SDK's fake node in the same way.
	"internal/hub": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent"},
	// The socket's serve plumbing, shared with agenttest: product-free, so
	// what an error means comes in through its Config (internal/apierror).
	"internal/socketapi": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent", "internal/apierror", "cmd/meshnode"},
	// The error table sits at the API edge: it may know the packages whose
	// errors it maps, never the node or the SDK.
	"internal/apierror": {"node", "gossip", "agent", "internal/socketapi", "cmd/meshnode"},
	// The SDK's fake node serves with socketapi but must stay as free of the
	// product as the SDK itself.
	"agent/agenttest": {"node", "transport", "consensus", "gossip", "routing", "pki", "quorum", "internal/apierror"},
	// The rooms behind the node: they may use the leaf packages and each
	// other's types, never the node, the SDK or the socket edge.
	"internal/catalog": {"node", "agent", "cmd/meshnode", "internal/socketapi", "internal/apierror", "internal/dataplane"},
	// Tasks on the node that runs them: a store and its runner, driven by
	// the data plane through Deliver; they know no routing, peer or socket.
	"internal/tasks":     {"node", "transport", "consensus", "gossip", "routing", "agent", "cmd/meshnode", "internal/socketapi", "internal/apierror", "internal/api", "internal/dataplane", "internal/hub", "internal/catalog"},
	"internal/dataplane": {"node", "transport", "consensus", "gossip", "agent", "cmd/meshnode", "internal/socketapi", "internal/apierror", "internal/catalog"},
	// Operator identity and signed commands: pure checks the state machine,
	// the API and the CLI call, so it knows none of them; and never pki, so
	// the online CA cannot vouch for an operator. It may use the wire types
	// and the key-file writer only.
	"operator": {"node", "transport", "consensus", "gossip", "routing", "quorum", "agent", "pki", "cmd", "bench", "e2e", "examples",
		"internal/api", "internal/apierror", "internal/background", "internal/benchutil", "internal/catalog", "internal/clock",
		"internal/connectjson", "internal/dataplane", "internal/hub", "internal/settings", "internal/socketapi"},
	// The product's one clock: every package may use it, so it uses none of
	// them ("internal" bans every other internal package, present and future).
	// The agent API's services: they use the rooms and leaf packages, never
	// the node, the SDK or the CLI.
	"internal/api": {"node", "agent", "cmd/meshnode"},
	// Background loops of one component: generic, so it knows only the clock.
	"internal/background": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent", "proto", "cmd", "internal/api", "internal/catalog", "internal/dataplane", "internal/hub", "internal/socketapi", "internal/apierror", "e2e", "bench", "examples"},
	// Metrics and the traffic matrix hear the data plane and the router
	// through their observer interfaces; what else they show reaches them as
	// functions the node passes in, so they know none of the components.
	"internal/metrics": {"node", "transport", "consensus", "gossip", "pki", "agent", "cmd", "internal/api", "internal/socketapi", "internal/apierror", "internal/catalog", "internal/traffic"},
	"internal/traffic": {"node", "transport", "consensus", "gossip", "pki", "agent", "cmd", "internal/api", "internal/socketapi", "internal/apierror", "internal/catalog", "internal/metrics"},
	// The dashboard's web server reads the node through its Source only:
	// it knows no component and no socket; the CLI wires it to the socket.
	"internal/dashboard": {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent", "cmd", "internal/api", "internal/socketapi", "internal/apierror", "internal/catalog", "internal/dataplane", "internal/hub", "internal/traffic", "internal/metrics"},
	"internal/clock":     {"node", "transport", "pki", "consensus", "gossip", "routing", "quorum", "agent", "proto", "cmd", "internal", "e2e", "bench", "examples"},
}

func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "github.com/agentmesh/meshnode/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		deps[strings.TrimPrefix(f[0], module)] = f[1:]
	}
	// And the product never links the benchmark helpers.
	for _, d := range deps["cmd/meshnode"] {
		if d == module+"internal/benchutil" {
			t.Errorf("cmd/meshnode links internal/benchutil, which only benchmarks may import")
		}
	}
	for pkg, bans := range forbidden {
		if _, ok := deps[pkg]; !ok {
			t.Errorf("package %s is missing from the module", pkg)
			continue
		}
		checkPrefix := func(dep string) {
			for _, ban := range bans {
				if dep == module+ban || strings.HasPrefix(dep, module+ban+"/") {
					t.Errorf("%s must not import %s, but depends on %s", pkg, ban, dep)
				}
			}
		}
		for _, d := range deps[pkg] {
			checkPrefix(d)
		}
	}
}

// TestBoundaryCheckCatchesViolation guards the test above against passing
// vacuously: cmd/meshnode imports node, so a rule forbidding it must fire.
func TestBoundaryCheckCatchesViolation(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Deps " "}}`, module+"cmd/meshnode").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), module+"node") {
		t.Fatal("expected cmd/meshnode to depend on node; the dependency listing is broken")
	}
}
