package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestVoterSelection(t *testing.T) {
	sel, err := voterSelection("", []string{"a", "b", "c"}, 4, false)
	if err != nil || sel.GetCount() != 0 || len(sel.GetAgentIds()) != 3 {
		t.Fatalf("--agents a,b,c without --count: %v, %v; want the three agents and the count left to them", sel, err)
	}
	for _, tc := range []struct {
		capability string
		agents     []string
		count      uint32
		given      bool
		want       string
	}{
		{"", []string{"a", "b", "c"}, 4, true, "--count 4 but --agents names 3"},
		{"cap", []string{"a"}, 4, false, "not both"},
		{"", nil, 4, false, "--capability CAP"},
	} {
		_, err := voterSelection(tc.capability, tc.agents, tc.count, tc.given)
		if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("voterSelection(%q, %v, %d, %v) = %v, want a usage error saying %q", tc.capability, tc.agents, tc.count, tc.given, err, tc.want)
		}
	}
}

func TestNodeErrorsSpeakInFlags(t *testing.T) {
	nodeErr := status.Error(codes.InvalidArgument, "invalid proposal: selection.count is required for QUORUM_RULE_KIND_K_OF_N; rule.k = 5 with 3 voters")
	err := inFlagWords(rpcError("propose", nodeErr, "/s"))
	msg := err.Error()
	if exitCode(err) != exitUsage || !strings.Contains(msg, "--count is required for k-of-n") || !strings.Contains(msg, "--k = 5") {
		t.Fatalf("got %q (exit %d)", msg, exitCode(err))
	}
	for _, proto := range []string{"selection.", "rule.", "QUORUM_RULE_KIND"} {
		if strings.Contains(msg, proto) {
			t.Errorf("%q still names %s", msg, proto)
		}
	}
}

func TestEnumSpellings(t *testing.T) {
	ed := meshnodev1.LocalityPreference(0).Descriptor()
	for _, s := range []string{"local-only", "local_only", "LOCAL_ONLY", "LOCALITY_PREFERENCE_LOCAL_ONLY"} {
		v, err := parseEnum(ed, "--locality", s)
		if err != nil || v.Number() != meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_LOCAL_ONLY.Number() {
			t.Errorf("%q: %v, %v", s, v, err)
		}
	}
	_, err := parseEnum(ed, "--locality", "nearby")
	if err == nil || !strings.Contains(err.Error(), "use none, prefer-local, local-only") {
		t.Errorf("an unknown value should list the valid ones: %v", err)
	}
	doc := []byte(`{"policy":"cost","locality":"prefer-local","proficiency":{"levels":[{"minComplexity":4,"minProficiency":"expert"}]}}`)
	b, err := normalizeEnums(doc, (&meshnodev1.RoutingPolicy{}).ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	pol := &meshnodev1.RoutingPolicy{}
	if err := protojson.Unmarshal(b, pol); err != nil {
		t.Fatalf("normalized %s: %v", b, err)
	}
	if pol.GetLocality() != meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_PREFER_LOCAL || pol.GetProficiency().GetLevels()[0].GetMinProficiency() != meshnodev1.Proficiency_PROFICIENCY_EXPERT {
		t.Errorf("friendly enums in a file: got %v", pol)
	}
	_, err = normalizeEnums([]byte(`{"proficiency":{"levels":[{"minProficiency":"guru"}]}}`), pol.ProtoReflect().Descriptor())
	if err == nil || !strings.Contains(err.Error(), "proficiency.levels.min_proficiency") || !strings.Contains(err.Error(), "novice, experienced, expert") {
		t.Errorf("a bad nested enum should name the field and the valid values: %v", err)
	}
}

func TestPolicyFlagsPatch(t *testing.T) {
	cmd := newPolicySetCmd()
	if err := cmd.ParseFlags([]string{"--max-attempts", "2", "--locality", "local-only"}); err != nil {
		t.Fatal(err)
	}
	stored := &meshnodev1.RoutingPolicy{Capability: "x", Policy: "cost", MaxHops: 4, QualityTiers: []float64{0.99}}
	got := proto.Clone(stored).(*meshnodev1.RoutingPolicy)
	p := policyFlags{maxAttempts: 2, locality: "local-only"}
	if err := p.apply(got); err != nil {
		t.Fatal(err)
	}
	if got.GetPolicy() != "cost" || got.GetMaxHops() != 4 || len(got.GetQualityTiers()) != 1 || got.GetRetry().GetMaxAttempts() != 2 || got.GetLocality() != meshnodev1.LocalityPreference_LOCALITY_PREFERENCE_LOCAL_ONLY {
		t.Errorf("patch of %v with --max-attempts 2 --locality local-only gave %v", stored, got)
	}
	p = policyFlags{}
	if ch := p.changed(cmd); strings.Join(ch, ",") != "locality,retry.max_attempts" {
		t.Errorf("changed fields: %v", ch)
	}
}

func TestCallData(t *testing.T) {
	for _, tc := range []struct {
		data, ct string
		ok       bool
	}{
		{`"hello"`, "application/json", true},
		{`{"a":1}`, "application/json; charset=utf-8", true},
		{``, "application/json", true},
		{`hello`, "application/json", false},
		{`{"a":`, "application/vnd.x+json", false},
		{`hello`, "text/plain", true},
	} {
		err := checkJSONData([]byte(tc.data), tc.ct)
		if (err == nil) != tc.ok || (err != nil && (exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--content-type text/plain"))) {
			t.Errorf("--data %q --content-type %q: %v", tc.data, tc.ct, err)
		}
	}
}

func TestCallJSONShowsJSONAnswers(t *testing.T) {
	var b bytes.Buffer
	if err := printCallJSON(&b, &meshnodev1.CallResponse{Payload: []byte(`{"echo":"HI"}`), ContentType: "application/json", AgentId: "n3/py", Node: "n3"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"echo": "HI"`) || !strings.Contains(b.String(), `"payloadEncoding": "json"`) || !strings.Contains(b.String(), `"agentId": "n3/py"`) {
		t.Errorf("a JSON answer should print as JSON:\n%s", b.String())
	}
	b.Reset()
	if err := printCallJSON(&b, &meshnodev1.CallResponse{Payload: []byte("plain"), ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"cGxhaW4="`) || !strings.Contains(b.String(), `"payloadEncoding": "base64"`) {
		t.Errorf("a text answer should print as base64:\n%s", b.String())
	}
}

func TestSocketPermissionHint(t *testing.T) {
	err := socketError("/var/lib/meshnode/meshnode.sock", fmt.Errorf("dial: %w", errors.New("x")))
	if strings.Contains(err.Error(), "permission") {
		t.Fatalf("not a permission error: %v", err)
	}
	err = socketError("/var/lib/meshnode/meshnode.sock", &fs.PathError{Op: "dial", Path: "/var/lib/meshnode/meshnode.sock", Err: syscall.EACCES})
	if !strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "meshnode run") || !strings.Contains(err.Error(), "group") {
		t.Fatalf("a permission error should say how to get access, not to start a node: %v", err)
	}
}
