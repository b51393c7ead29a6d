package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// MaxFileSize bounds a policy file; a policy of MaxRules rules fits well
// within it.
const MaxFileSize = 4 << 20

// yamlPolicy is the file's form. Unknown keys are errors (KnownFields), so
// a misspelt "deny" key cannot silently allow.
type yamlPolicy struct {
	Mode       string        `yaml:"mode"`
	Bindings   []yamlBinding `yaml:"bindings,omitempty"`
	CallRules  []yamlCall    `yaml:"call_rules,omitempty"`
	ServeRules []yamlServe   `yaml:"serve_rules,omitempty"`
}

type yamlBinding struct {
	Node  string   `yaml:"node,omitempty"`
	Agent string   `yaml:"agent,omitempty"`
	UID   *uint32  `yaml:"uid,omitempty"`
	Roles []string `yaml:"roles"`
}

type yamlCall struct {
	FromRole     string `yaml:"from_role,omitempty"`
	FromAgent    string `yaml:"from_agent,omitempty"`
	ToCapability string `yaml:"to_capability,omitempty"`
	ToRole       string `yaml:"to_role,omitempty"`
	Action       string `yaml:"action"`
}

type yamlServe struct {
	Capability string   `yaml:"capability"`
	Roles      []string `yaml:"roles"`
}

// DecodeYAML reads a policy file named name, validates it, and returns it
// with Source set to name. Every error names the file, and the line and
// field where it can.
func DecodeYAML(name string, data []byte) (*meshnodev1.AuthzPolicy, error) {
	if len(data) > MaxFileSize {
		return nil, &FieldError{Source: name, Path: "(file)", Msg: fmt.Sprintf("%d bytes, over %d", len(data), MaxFileSize)}
	}
	var y yamlPolicy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	p := &meshnodev1.AuthzPolicy{Mode: y.Mode, Source: name}
	for _, b := range y.Bindings {
		p.Bindings = append(p.Bindings, &meshnodev1.RoleBinding{Node: b.Node, Agent: b.Agent, Uid: b.UID, Roles: b.Roles})
	}
	for _, r := range y.CallRules {
		p.CallRules = append(p.CallRules, &meshnodev1.CallRule{FromRole: r.FromRole, FromAgent: r.FromAgent, ToCapability: r.ToCapability, ToRole: r.ToRole, Action: r.Action})
	}
	for _, r := range y.ServeRules {
		p.ServeRules = append(p.ServeRules, &meshnodev1.ServeRule{Capability: r.Capability, Roles: r.Roles})
	}
	if err := Validate(p); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			var root yaml.Node
			if yaml.Unmarshal(data, &root) == nil {
				fe.Line = lineOf(&root, fe.Path)
			}
		}
		return nil, err
	}
	return p, nil
}

var (
	yamlLineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlUnknownRE = regexp.MustCompile(`^field (\S+) not found in type`)
)

// yamlError turns the decoder's error into a FieldError with the file, the
// line, and for an unknown key the key's name.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	fe := &FieldError{Source: name, Path: "(file)", Msg: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = m[2]
		if u := yamlUnknownRE.FindStringSubmatch(m[2]); u != nil {
			fe.Path, fe.Msg = u[1], "unknown key"
		}
	}
	return fe
}

// lineOf finds the line of the node at path ("call_rules[2].action"): the
// field's own line if present, else the nearest enclosing node's.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, seg := range strings.Split(path, ".") {
		key, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			key = seg[:i]
			idx, _ = strconv.Atoi(seg[i+1 : len(seg)-1])
		}
		next := mapValue(n, key)
		if next == nil {
			return line
		}
		n, line = next, next.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n, line = n.Content[idx], n.Content[idx].Line
		}
	}
	return line
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// EncodeYAML writes p in the file form DecodeYAML reads.
func EncodeYAML(p *meshnodev1.AuthzPolicy) ([]byte, error) {
	y := yamlPolicy{Mode: p.GetMode()}
	for _, b := range p.GetBindings() {
		y.Bindings = append(y.Bindings, yamlBinding{Node: b.GetNode(), Agent: b.GetAgent(), UID: b.Uid, Roles: b.GetRoles()})
	}
	for _, r := range p.GetCallRules() {
		y.CallRules = append(y.CallRules, yamlCall{FromRole: r.GetFromRole(), FromAgent: r.GetFromAgent(), ToCapability: r.GetToCapability(), ToRole: r.GetToRole(), Action: r.GetAction()})
	}
	for _, r := range p.GetServeRules() {
		y.ServeRules = append(y.ServeRules, yamlServe{Capability: r.GetCapability(), Roles: r.GetRoles()})
	}
	return yaml.Marshal(y)
}
