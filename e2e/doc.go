// Package e2e holds end-to-end tests that start real meshnode processes,
// on loopback and, as root, in separate network namespaces.
//
// The fault scenarios of docs/e2e.md (scenario 1-8: joins in any order,
// leader kills checked with porcupine, partitions, agent failover, rolling
// restarts, certificate renewal, revocation, quorum with a voter cut off)
// build on a cluster harness (cluster_test.go), a network of namespaces or
// loopback addresses (netns_test.go) and the test agent in e2e/testagent.
// The fast subset runs in `make test`; MESHNODE_E2E_FULL=1 (`make e2e`)
// runs every scenario at full size.
package e2e
