#!/usr/bin/env bash
# Runs every benchmark once (each measures its own baseline in the same run)
# and records the figures in bench/results/. BENCH selects benchmarks,
# PKGS selects packages.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-.}"
PKGS="${PKGS:-./...}"
BENCHTIME="${BENCHTIME:-1s}"
go test -run '^$' -bench "$BENCH" -benchtime "$BENCHTIME" -timeout 60m $PKGS 2>&1 | tee bench/results/raw.txt.tmp
go run ./bench/cmd/benchreport -out bench/results < bench/results/raw.txt.tmp
mv bench/results/raw.txt.tmp bench/results/latest.txt
