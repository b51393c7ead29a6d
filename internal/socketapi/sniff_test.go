package socketapi

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestConnSplitter: HTTP/2 prefaces go to the gRPC side, anything else to
// HTTP/1.1, and the sniffed bytes are replayed intact.
func TestConnSplitter(t *testing.T) {
	cases := []struct {
		name  string
		first []byte
		h2    bool
	}{
		{"http2 preface", append(append([]byte{}, http2Preface...), "rest"...), true},
		{"http1 request", []byte("POST /meshnode.v1.NodeService/Status HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"short garbage", []byte("PRI"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
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
				buf := make([]byte, len(tc.first))
				if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != string(tc.first) {
					t.Fatalf("replayed bytes = %q, %v; want %q", buf, err, tc.first)
				}
				sc.Close()
			case <-time.After(5 * time.Second):
				t.Fatal("connection was not routed")
			}
		})
	}
}
