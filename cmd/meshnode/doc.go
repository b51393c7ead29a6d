// Command meshnode is the single meshnode binary: "meshnode run" starts the
// daemon, and the client subcommands (status, members, agents, call, token,
// policy, quorum, ...) talk to a running node over its Unix socket.
//
// It owns flag parsing, exit codes and output formatting (tables and --json)
// and nothing else: every behaviour lives in the packages it calls.
package main
