// Package benchutil holds what the call-path and quorum benchmarks share:
// closed-loop and paced load generators, percentiles, a bare grpc-go
// baseline server, and per-process CPU and memory readings from /proc.
// Only benchmarks import it; the product never does.
package benchutil
