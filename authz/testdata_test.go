package authz

// seedPolicy is the seed's example: "agents in 'processing' role can call
// agents in 'analysis' role but not 'admin'".
const seedPolicy = `
mode: deny
bindings:
  - agent: "ingest-*"
    roles: [processing]
  - agent: "analyst*"
    roles: [analysis]
  - node: "ops"
    agent: "*"
    roles: [admin]
  - uid: 1000
    agent: "shell"
    roles: [processing]
call_rules:
  - from_role: processing
    to_role: analysis
    action: allow
  - from_role: processing
    to_capability: "analysis.*"
    action: allow
  - from_role: processing
    to_capability: "admin.*"
    action: deny
  - from_role: processing
    to_role: admin
    action: deny
  - from_agent: "n1/ingest-legacy"
    to_capability: "analysis.slow"
    action: deny
serve_rules:
  - capability: "admin.*"
    roles: [admin]
  - capability: "analysis.*"
    roles: [analysis]
  - capability: "ingest.*"
    roles: [processing]
`
