// Package tasks owns long-running tasks on the node of the agent that runs
// them: a durable store (bbolt, one fsync per recorded event) of each
// task's record and event log, the runner that turns a task's streaming
// answer into events, watches that replay a log from any sequence number
// and then follow it live, cancellation, and the sweeper that forgets ended
// tasks after their retention.
//
// It knows nothing of routing, peers or the socket: the data plane gives it
// a way to deliver the task to a local agent (Deliver) and carries its
// answers to other nodes. It must not import node, the data plane, the
// agent SDK or the API edge.
package tasks
