package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := HCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Named("raft").With("term", 3).Warn("election", "node", "s1")
	l.Debug("hidden")
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []int{1, 2}))
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] memberlist: boom")
	out := buf.String()
	for _, want := range []string{"level=WARN", "msg=election", "logger=raft", "term=3", "node=s1", "level=ERROR", `msg="memberlist: boom"`, `servers="[1 2]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") || l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("levels not honoured: debug=%v info=%v level=%v\n%s", l.IsDebug(), l.IsInfo(), l.GetLevel(), out)
	}
}
