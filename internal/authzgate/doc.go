// Package authzgate is a node's authorization gate: the authorization
// policy in force, compiled once per policy version (the Raft index it was
// stored at) and shared by every call, and the agents as the policy sees
// them (id and owner uid from the replicated registry), remembered per
// applied index. The data plane asks it about every call, on the caller's
// node before any network and on the callee's node before delivery; the API
// asks it for `meshnode authz check`.
//
// It decides nothing itself (package authz does) and verifies no identity
// (the data plane passes callers it verified). It reads only the local
// replica and never blocks on the network.
package authzgate
