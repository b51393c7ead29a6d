// Command benchreport reads `go test -bench` output on stdin and writes the
// figures to a Markdown table and a JSON file, so every run of `make bench`
// leaves a record that can be compared with earlier ones.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Result is one benchmark line.
type Result struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
	Order      []string           `json:"-"`
}

// Report is the whole run.
type Report struct {
	When    time.Time `json:"when"`
	GoOS    string    `json:"goos"`
	GoArch  string    `json:"goarch"`
	CPUs    int       `json:"cpus"`
	CPU     string    `json:"cpu,omitempty"`
	Results []Result  `json:"results"`
	Failed  []string  `json:"failed,omitempty"`
}

func main() {
	outDir := flag.String("out", "bench/results", "directory for latest.md and latest.json")
	flag.Parse()
	rep := Report{When: time.Now().UTC(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	pkg := ""
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(line, "cpu: "):
			rep.CPU = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "FAIL"), strings.HasPrefix(line, "--- FAIL"):
			rep.Failed = append(rep.Failed, line)
		case strings.HasPrefix(line, "Benchmark"):
			if r, ok := parseLine(pkg, line); ok {
				rep.Results = append(rep.Results, r)
			}
		}
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fatal(err)
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(*outDir, "latest.json"), append(js, '\n'), 0o644); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*outDir, "latest.md"), []byte(markdown(rep)), 0o644); err != nil {
		fatal(err)
	}
	fmt.Printf("benchreport: %d results written to %s/latest.{md,json}\n", len(rep.Results), *outDir)
	if len(rep.Failed) > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: %d failures in the run\n", len(rep.Failed))
		os.Exit(1)
	}
}

// parseLine reads "BenchmarkName-2  10  123 ns/op  4.5 ratio ...".
func parseLine(pkg, line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return Result{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return Result{}, false
	}
	r := Result{Package: pkg, Name: f[0], Iterations: n, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		r.Metrics[f[i+1]] = v
		r.Order = append(r.Order, f[i+1])
	}
	return r, true
}

func markdown(rep Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\n%s, %s/%s, %d CPUs, %s\n\n", rep.When.Format(time.RFC3339), rep.GoOS, rep.GoArch, rep.CPUs, rep.CPU)
	b.WriteString("Each benchmark measures its baseline in the same run; `ratio` metrics compare the two.\n\n")
	last := ""
	for _, r := range rep.Results {
		if r.Package != last {
			fmt.Fprintf(&b, "\n## %s\n\n| benchmark | metrics |\n|---|---|\n", r.Package)
			last = r.Package
		}
		var ms []string
		for _, k := range r.Order {
			ms = append(ms, fmt.Sprintf("%s %s", strconv.FormatFloat(r.Metrics[k], 'g', 4, 64), k))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", r.Name, strings.Join(ms, ", "))
	}
	if len(rep.Failed) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, f := range rep.Failed {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}
