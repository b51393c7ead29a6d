// Package api implements the agent API's services (NodeService,
// RegistryService, InvokeService, PolicyService, QuorumService and
// PKIService) on top of the rooms that do the work: the agent hub, the
// catalog, the data plane, the quorum coordinator and the consensus store.
// The node builds a Config and calls Register; internal/socketapi serves
// what was registered.
//
// Services check what a caller asked for (fields, ownership of an agent by
// the calling process) and return package errors; the one error table in
// internal/apierror turns them into gRPC and Connect codes at the socket's
// edge. Wrap only adds what was being done.
//
// Files:
//   - api.go: Config and Register.
//   - registry.go, validate.go, watch.go: RegistryService, the registration
//     rules and the registry watch stream; Registry.Reap is what the hub
//     calls for an agent that stayed away.
//   - invoke.go: InvokeService (Call, Serve, Attach, Respond) and ServeLimit.
//   - policy.go: PolicyService.
//   - quorum.go: QuorumService; decisions.go: Decisions, the store-backed
//     quorum.Committer the coordinator and the service share.
//   - status.go: NodeService (Status, Members).
//   - pki.go: PKIService.
//
// It must not import node, agent or cmd/meshnode.
package api
