package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/agentmesh/meshnode/internal/traffic"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
)

func newTopCmd() *cobra.Command {
	var mf *matrixFlags
	var once bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live view of the busiest agent pairs, refreshed every second",
		Long: `Live view of the traffic matrix (see 'meshnode traffic'), one line per caller
agent, callee agent and capability, refreshed every second and cut to the
terminal's size. Keys: r, e, l, n sort by rate, errors, p99 latency or name;
w cycles the window (10s, 1m, 10m); q quits. --once prints one frame and exits,
for scripts.`,
		Example: `  meshnode top
  meshnode top --sort errors --window 1m
  meshnode top --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, err := mf.parse()
			if err != nil {
				return err
			}
			conn, err := mf.cf.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			v := &topView{conn: conn, cf: mf.cf, local: mf.local, window: w, sort: mf.sortKey, width: 80, height: 24}
			if once {
				frame, err := v.frame()
				if err != nil {
					return err
				}
				_, err = io.WriteString(cmd.OutOrStdout(), frame)
				return err
			}
			return v.live(cmd.OutOrStdout())
		},
	}
	mf = addMatrixFlags(cmd, "10s", true)
	cmd.Flags().BoolVar(&once, "once", false, "print one frame and exit")
	return cmd
}

type topView struct {
	conn          grpc.ClientConnInterface
	cf            *clientFlags
	local         bool
	window        int
	sort          string
	width, height int
}

// frame fetches the matrix and renders one screen of at most width×height.
func (v *topView) frame() (string, error) {
	ctx, cancel := v.cf.context()
	defer cancel()
	m, err := loadMatrix(ctx, v.conn, v.local, v.window, v.cf.socketPath())
	if err != nil {
		return "", err
	}
	return v.render(m), nil
}

// render draws m in at most width×height.
func (v *topView) render(m *matrix) string {
	edges := m.active()
	m.sortEdges(edges, v.sort)
	var b strings.Builder
	head := fmt.Sprintf("meshnode top  %d nodes  %d pairs  last %s  sort %s  [r e l n w q]", len(m.resp.GetNodes()), len(edges),
		shortSpan(traffic.Spans[v.window]), v.sort)
	if u := m.resp.GetUnreachableNodes(); len(u) > 0 {
		head += fmt.Sprintf("  down: %s", strings.Join(u, ","))
	}
	b.WriteString(cut(head, v.width) + "\n")
	// 17+1+17+1+13+1+7+1+6+1+7+1+7 = 80 columns.
	b.WriteString(fmt.Sprintf("%-17s %-17s %-13s %7s %6s %7s %7s\n", "CALLER", "CALLEE", "CAPABILITY", "RPS", "OK%", "P50", "P99"))
	rows := max(v.height-3, 1)
	for i := range edges {
		if i == rows {
			b.WriteString(fmt.Sprintf("(%d more)\n", len(edges)-rows))
			break
		}
		e := &edges[i]
		s := m.stats(e)
		b.WriteString(fmt.Sprintf("%-17s %-17s %-13s %7.2f %6.1f %7s %7s\n", tail(agentLabel(e.Caller), 17), tail(agentLabel(e.Callee), 17),
			tail(e.Capability, 13), s.Rate(), s.SuccessPercent(), fmtMs(s.Quantile(.5)), fmtMs(s.Quantile(.99))))
	}
	return b.String()
}

// tail keeps the end of s, the distinguishing part of an agent id or a
// dotted capability, in n columns.
func tail(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// live redraws every second until q (or an interrupt). Keys are read raw
// when standard input is a terminal; otherwise only an interrupt stops it.
func (v *topView) live(out io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	keys := make(chan byte, 8)
	fd := int(os.Stdin.Fd())
	nl := "\n"
	if term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err == nil {
			defer term.Restore(fd, old)
			nl = "\r\n" // raw mode does not turn \n into a carriage return
			go func() {
				buf := make([]byte, 1)
				for {
					if n, err := os.Stdin.Read(buf); err != nil || n == 0 {
						return
					}
					keys <- buf[0]
				}
			}()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w > 0 && h > 0 {
			v.width, v.height = w, h
		}
		frame, err := v.frame()
		if err != nil {
			frame = "meshnode top: " + err.Error() + "\n"
		}
		fmt.Fprint(out, "\x1b[H\x1b[2J"+strings.ReplaceAll(frame, "\n", nl))
		select {
		case <-ctx.Done():
			return nil
		case k := <-keys:
			switch k {
			case 'q', 3: // 3: ^C, which raw mode delivers as a byte
				return nil
			case 'r':
				v.sort = "rate"
			case 'e':
				v.sort = "errors"
			case 'l':
				v.sort = "latency"
			case 'n':
				v.sort = "name"
			case 'w':
				v.window = (v.window + 1) % traffic.NumSpans
			}
		case <-tick.C:
		}
	}
}
