package socketapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Server-Sent Events for server-streaming methods (CallStream, Watch):
// a JSON POST that accepts text/event-stream is rewritten into Connect's
// server-streaming protocol for the same transcoder, and each enveloped
// message coming back is written as one event and flushed, so
//
//	curl -N --unix-socket SOCK -H 'Accept: text/event-stream' \
//	  -H 'Content-Type: application/json' -d '{"capability":"llm.generate"}' \
//	  http://localhost/meshnode.v1.InvokeService/CallStream
//
// prints chunks as they come. One service implementation still answers
// every protocol. Backpressure holds: a write to a slow curl blocks the
// transcoder, which stops reading from the gRPC handler.

// connectEndStream flags the last envelope of a Connect stream: its JSON
// carries the error, if any, and trailers.
const connectEndStream = 0x02

func wantsSSE(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/json" && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// serverSentEvents serves SSE requests as described above and passes
// everything else to next.
func serverSentEvents(maxMessage int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !wantsSSE(r) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(maxMessage)+1))
		if err != nil || len(body) > maxMessage {
			writeConnectError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("request body unreadable or over %d bytes", maxMessage))
			return
		}
		env := make([]byte, 5, 5+len(body))
		binary.BigEndian.PutUint32(env[1:], uint32(len(body)))
		env = append(env, body...)
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(env))
		r2.ContentLength = int64(len(env))
		r2.Header.Set("Content-Type", "application/connect+json")
		r2.Header.Set("Connect-Protocol-Version", "1")
		r2.Header.Del("Accept")
		r2.Header.Del("Content-Length")
		sw := &sseWriter{w: w, header: http.Header{}}
		next.ServeHTTP(sw, r2)
	})
}

// sseWriter turns Connect stream envelopes into events. A response that
// is not a stream (an error status before it started) passes through.
type sseWriter struct {
	w           http.ResponseWriter
	header      http.Header
	status      int
	passthrough bool
	buf         []byte
}

func (s *sseWriter) Header() http.Header { return s.header }

func (s *sseWriter) WriteHeader(code int) {
	if s.status != 0 {
		return
	}
	s.status = code
	if code != http.StatusOK {
		s.passthrough = true
		for k, v := range s.header {
			s.w.Header()[k] = v
		}
		s.w.WriteHeader(code)
		return
	}
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.passthrough {
		return s.w.Write(p)
	}
	s.buf = append(s.buf, p...)
	for len(s.buf) >= 5 {
		n := int(binary.BigEndian.Uint32(s.buf[1:5]))
		if len(s.buf) < 5+n {
			break
		}
		flags, msg := s.buf[0], s.buf[5:5+n]
		if err := s.event(flags, msg); err != nil {
			return 0, err
		}
		s.buf = s.buf[5+n:]
	}
	return len(p), nil
}

// event writes one envelope as an event and flushes it: a message as
// "data", its chunk sequence (if any) as the event id; the end of the
// stream as "end", or "error" with the Connect error JSON.
func (s *sseWriter) event(flags byte, msg []byte) error {
	var b bytes.Buffer
	if flags&connectEndStream != 0 {
		var end struct {
			Error json.RawMessage `json:"error"`
		}
		_ = json.Unmarshal(msg, &end)
		if len(end.Error) > 0 {
			fmt.Fprintf(&b, "event: error\ndata: %s\n\n", compactJSON(end.Error))
		} else {
			b.WriteString("event: end\ndata: {}\n\n")
		}
	} else {
		var m struct {
			Chunk struct {
				Seq string `json:"seq"`
			} `json:"chunk"`
		}
		if json.Unmarshal(msg, &m) == nil && m.Chunk.Seq != "" {
			fmt.Fprintf(&b, "id: %s\n", m.Chunk.Seq)
		}
		fmt.Fprintf(&b, "data: %s\n\n", compactJSON(msg))
	}
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	s.Flush()
	return nil
}

// compactJSON keeps an event's data on one line, as SSE requires.
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return bytes.ReplaceAll(b, []byte("\n"), []byte(" "))
	}
	return out.Bytes()
}

// Flush sends what was written so far: each event reaches the client as
// soon as it is complete.
func (s *sseWriter) Flush() {
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}
