// Package selfrevoke tells a node that the cluster revoked it. Every peer
// refuses a revoked node's certificate, so nothing it retries can succeed;
// the watcher notices, says so once, and — unless told to stay up — asks
// its owner to stop.
//
// Two signals: the local replica's revocation of the node's name or
// current certificate (it arrives before the servers cut the node off), and,
// when the replica cannot be read (a client restarted after its
// revocation), every seed refusing the node's certificate with the TLS
// bad_certificate alert on several checks in a row.
//
// It may import consensus (the read types), the transport's error codes and
// the standard library, never the node.
package selfrevoke
