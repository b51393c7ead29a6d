package socketapi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// clientStart is what an HTTP/2 client sends first: the preface, its
// SETTINGS, the acknowledgement of the server's SETTINGS (when ack), and
// the HEADERS of its first request with the given content-type.
func clientStart(t *testing.T, contentType string, ack bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(http2Preface)
	fr := http2.NewFramer(&buf, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	if ack {
		fr.WriteSettingsAck()
	}
	fr.WriteWindowUpdate(0, 1<<16)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/meshnode.v1.NodeService/Status"}, {":authority", "x"}, {"content-type", contentType}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, PadLength: 3})
	return buf.Bytes()
}

// TestConnSplitter: HTTP/2 whose first request is gRPC goes to the gRPC
// side, anything else to HTTP; the sniffed bytes are replayed intact, except
// that the HTTP side does not see the client's acknowledgement of the
// sniffer's SETTINGS.
func TestConnSplitter(t *testing.T) {
	grpcStart := clientStart(t, "application/grpc+proto", true)
	jsonStart := clientStart(t, "application/json", true)
	jsonWant := clientStart(t, "application/json", false)
	cases := []struct {
		name        string
		first, want []byte
		h2          bool
	}{
		{"gRPC over HTTP/2", grpcStart, grpcStart, true},
		{"JSON over HTTP/2", jsonStart, jsonWant, false},
		{"HTTP/2 preface then silence", append(append([]byte{}, http2Preface...), "rest"...), nil, true},
		{"HTTP/1.1 request", []byte("POST /meshnode.v1.NodeService/Status HTTP/1.1\r\nHost: x\r\n\r\n"), nil, false},
		{"short garbage", []byte("PRI"), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				tc.want = tc.first
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := newConnSplitter(l, 200*time.Millisecond)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go s.run(ctx)
			defer l.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go io.Copy(io.Discard, c) // the sniffer's SETTINGS
			c.Write(tc.first)
			want, other := s.h1, s.h2
			if tc.h2 {
				want, other = s.h2, s.h1
			}
			got := make(chan net.Conn, 1)
			go func() {
				if c, err := want.Accept(); err == nil {
					got <- c
				}
			}()
			go func() {
				if c, err := other.Accept(); err == nil {
					t.Errorf("connection went to the wrong protocol")
					c.Close()
				}
			}()
			select {
			case sc := <-got:
				buf := make([]byte, len(tc.want))
				if _, err := io.ReadFull(sc, buf); err != nil || !bytes.Equal(buf, tc.want) {
					t.Fatalf("replayed bytes = %q, %v; want %q", buf, err, tc.want)
				}
				sc.Close()
			case <-time.After(5 * time.Second):
				t.Fatal("connection was not routed")
			}
		})
	}
}

// TestAckDropConnPassesLaterFrames: after the one dropped acknowledgement,
// frames (a later ACK included) pass unchanged, however Read is sliced.
func TestAckDropConnPassesLaterFrames(t *testing.T) {
	var in, want bytes.Buffer
	in.Write(http2Preface)
	want.Write(http2Preface)
	a, b := http2.NewFramer(&in, nil), http2.NewFramer(&want, nil)
	a.WriteData(1, false, []byte("before"))
	b.WriteData(1, false, []byte("before"))
	a.WriteSettingsAck() // dropped
	for _, f := range []*http2.Framer{a, b} {
		f.WriteSettingsAck()
		f.WriteData(1, true, bytes.Repeat([]byte("x"), 1000))
	}
	c := newAckDropConn(nil, bufio.NewReader(&in))
	var out bytes.Buffer
	p := make([]byte, 7)
	for {
		n, err := c.Read(p)
		out.Write(p[:n])
		if err != nil {
			break
		}
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Fatalf("got %q\nwant %q", out.Bytes(), want.Bytes())
	}
}
