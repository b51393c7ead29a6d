// Package authz owns authorization between agents as pure logic: the
// policy document (role bindings, call rules, serve rules, mode), its
// validation, its YAML form, and the compiled Engine that decides whether
// an agent may call a capability (or a callee) and whether it may serve a
// capability. See docs/authorization.md.
//
// Roles come only from operator-written bindings, never from what an agent
// claims when it registers. Deny rules win over allow rules; in mode
// "allow" (the zero-config default) what no rule decides is allowed, in
// mode "deny" it is refused.
//
// It does no I/O, holds no clock and starts no goroutines. Where the
// policy is stored (consensus), where decisions are enforced (the data
// plane, the registry's state machine) and how the caller's identity is
// verified (the data plane) are other packages' business.
package authz
