package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger adapts memberlist's *log.Logger output into slog
// records. memberlist writes lines such as
//
//	[WARN] memberlist: Refuting a suspect message (from: n3)
//
// The level tag becomes the slog level and the "memberlist: " prefix is cut.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&slogWriter{log: l.With("component", "memberlist")}, "", 0)
}

type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(p, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		level, msg := parseMemberlistLine(string(line))
		if w.log.Enabled(context.Background(), level) {
			w.log.Log(context.Background(), level, msg)
		}
	}
	return len(p), nil
}

// parseMemberlistLine splits "[LEVEL] memberlist: msg" into a level and msg.
// Lines without a recognised tag are logged at Info, unchanged.
func parseMemberlistLine(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch strings.ToUpper(s[1:end]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				return level, s
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return level, s
}
