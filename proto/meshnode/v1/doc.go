// Package meshnodev1 holds the generated Go code for the meshnode.v1 protobuf
// package: the agent API served on the Unix socket, peer RPC messages and
// Raft commands. Regenerate with "make proto"; never edit *.pb.go by hand.
//
// It must not import any other package of this module.
package meshnodev1
