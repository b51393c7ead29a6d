// Package bench is the home of `make bench`: the benchmarks themselves live
// beside the code they measure (*_bench_test.go in each package) and report
// their in-run baselines and ratios with b.ReportMetric; cmd/benchreport
// turns the output of `go test -bench` into bench/results/latest.md and
// latest.json.
package bench
