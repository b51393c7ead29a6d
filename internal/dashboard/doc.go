// Package dashboard serves the meshnode web dashboard on the operator's
// machine: static assets embedded in the binary and JSON endpoints that
// read the node through a Source (the CLI backs it with the node's socket).
//
// It owns the HTTP surface only. It must not import the node, the SDK or
// any component behind the socket: everything it shows comes through
// Source, so the node itself never opens a web port. It verifies nothing:
// the browser checks decision bundles itself, so the page does not take
// the node's (or this server's) word for them.
package dashboard
