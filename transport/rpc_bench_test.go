package transport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/agentmesh/meshnode/transport"
	"github.com/agentmesh/meshnode/transport/transporttest"
)

// Benchmarks measure our RPC layer and, in the same run, two baselines on
// the same certificates: raw quic-go echo on long-lived streams (no
// framing), and TCP + TLS 1.3 mutual auth with a minimal multiplexer.

const benchCallers = 64

type roundTripper interface {
	// roundTrip sends req and fills resp (same length) with the echo.
	roundTrip(ctx context.Context, req, resp []byte) error
	// forCaller returns the round tripper caller i of the throughput run uses.
	forCaller(i int) roundTripper
}

// --- our RPC ---

type rpcRT struct {
	e    *transport.Endpoint
	addr string
}

func (r rpcRT) roundTrip(ctx context.Context, req, resp []byte) error {
	out, err := r.e.Call(ctx, r.addr, "echo", req)
	copy(resp, out)
	return err
}
func (r rpcRT) forCaller(int) roundTripper { return r }

func newRPC(b *testing.B) rpcRT {
	a := transporttest.NewEndpoint(b, "bench-a")
	srv := transporttest.NewEndpoint(b, "bench-b")
	srv.Handle("echo", func(ctx context.Context, p transport.Peer, req []byte) ([]byte, error) { return req, nil })
	return rpcRT{e: a, addr: srv.Addr().String()}
}

// --- raw quic-go: one long-lived stream per caller, echo without framing ---

type quicRT struct {
	conn    *quic.Conn
	streams []*quic.Stream
	s       *quic.Stream
}

func (q *quicRT) roundTrip(_ context.Context, req, resp []byte) error {
	if _, err := q.s.Write(req); err != nil {
		return err
	}
	_, err := io.ReadFull(q.s, resp)
	return err
}
func (q *quicRT) forCaller(i int) roundTripper { return &quicRT{s: q.streams[i]} }

func newRawQUIC(b *testing.B) *quicRT {
	ca := transporttest.SharedCA()
	srvTLS := ca.Source(b, td, ca.NodeCert(b, td, "qs"), nil).ServerConfig()
	srvTLS.NextProtos = []string{"bench"}
	cliTLS := ca.Source(b, td, ca.NodeCert(b, td, "qc"), nil).ClientConfig()
	cliTLS.NextProtos = []string{"bench"}
	conf := &quic.Config{MaxIncomingStreams: 256}
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, conf)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					wg.Go(func() { io.Copy(s, s); s.Close() })
				}
			})
		}
	})
	conn, err := quic.DialAddr(context.Background(), ln.Addr().String(), cliTLS, conf)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.CloseWithError(0, "") })
	q := &quicRT{conn: conn}
	for range benchCallers {
		s, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		q.streams = append(q.streams, s)
	}
	q.s = q.streams[0]
	return q
}

// --- TCP + TLS 1.3 mTLS, minimal multiplexer: [id uint32][len uint32][payload] ---

type tcpMux struct {
	wmu     sync.Mutex
	conn    *tls.Conn
	nextID  atomic.Uint32
	mu      sync.Mutex
	waiting map[uint32]chan []byte
}

func (m *tcpMux) roundTrip(_ context.Context, req, resp []byte) error {
	id := m.nextID.Add(1)
	ch := make(chan []byte, 1)
	m.mu.Lock()
	m.waiting[id] = ch
	m.mu.Unlock()
	hdr := make([]byte, 8, 8+len(req))
	binary.BigEndian.PutUint32(hdr, id)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(req)))
	m.wmu.Lock()
	_, err := m.conn.Write(append(hdr, req...))
	m.wmu.Unlock()
	if err != nil {
		return err
	}
	copy(resp, <-ch)
	return nil
}
func (m *tcpMux) forCaller(int) roundTripper { return m }

func (m *tcpMux) readLoop() {
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(m.conn, hdr); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(m.conn, buf); err != nil {
			return
		}
		id := binary.BigEndian.Uint32(hdr)
		m.mu.Lock()
		ch := m.waiting[id]
		delete(m.waiting, id)
		m.mu.Unlock()
		ch <- buf
	}
}

func newTCPTLS(b *testing.B) *tcpMux {
	ca := transporttest.SharedCA()
	srvTLS := ca.Source(b, td, ca.NodeCert(b, td, "ts"), nil).ServerConfig()
	cliTLS := ca.Source(b, td, ca.NodeCert(b, td, "tc"), nil).ClientConfig()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hdr := make([]byte, 8)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			buf := make([]byte, 8+binary.BigEndian.Uint32(hdr[4:]))
			copy(buf, hdr)
			if _, err := io.ReadFull(c, buf[8:]); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	c, err := tls.Dial("tcp", ln.Addr().String(), cliTLS)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	m := &tcpMux{conn: c, waiting: map[uint32]chan []byte{}}
	b.Cleanup(func() { c.Close() })
	wg.Go(m.readLoop)
	return m
}

func percentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

// BenchmarkRPCRoundTrip64B: sequential 64-byte round trips on established
// connections, interleaved across the three systems so noise hits all alike.
func BenchmarkRPCRoundTrip64B(b *testing.B) {
	systems := []roundTripper{newRPC(b), newRawQUIC(b), newTCPTLS(b)}
	ctx := context.Background()
	req, resp := make([]byte, 64), make([]byte, 64)
	for _, s := range systems { // warm up
		for range 100 {
			if err := s.roundTrip(ctx, req, resp); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(systems))
	b.ResetTimer()
	for range b.N {
		for i, s := range systems {
			start := time.Now()
			if err := s.roundTrip(ctx, req, resp); err != nil {
				b.Fatal(err)
			}
			lat[i] = append(lat[i], time.Since(start))
		}
	}
	b.StopTimer()
	p50, p99 := percentile(lat[0], 0.5), percentile(lat[0], 0.99)
	b.ReportMetric(p50, "p50-us")
	b.ReportMetric(p99, "p99-us")
	b.ReportMetric(percentile(lat[1], 0.5), "quic-p50-us")
	b.ReportMetric(percentile(lat[1], 0.99), "quic-p99-us")
	b.ReportMetric(percentile(lat[2], 0.5), "tcptls-p50-us")
	b.ReportMetric(percentile(lat[2], 0.99), "tcptls-p99-us")
	b.ReportMetric(p50/percentile(lat[1], 0.5), "p50-ratio-vs-quic")
	b.ReportMetric(p50/percentile(lat[2], 0.5), "p50-ratio-vs-tcptls")
}

// throughput runs total 1 KiB round trips from benchCallers goroutines and
// returns requests per second.
func throughput(b *testing.B, rt roundTripper, total int) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range benchCallers {
		c := rt.forCaller(i)
		wg.Go(func() {
			req, resp := make([]byte, 1024), make([]byte, 1024)
			for next.Add(1) <= int64(total) {
				if err := c.roundTrip(context.Background(), req, resp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// BenchmarkRPCThroughput1KiB: 64 concurrent callers, 1 KiB echo, one
// connection. The systems run in short interleaved rounds and the ratios
// are medians of per-round ratios, so bursts of load from other processes
// on this shared machine skew neither side.
func BenchmarkRPCThroughput1KiB(b *testing.B) {
	systems := []roundTripper{newRPC(b), newRawQUIC(b), newTCPTLS(b)}
	for _, s := range systems { // warm up: handshakes done, stream pool filled
		throughput(b, s, 4*benchCallers)
	}
	const rounds = 15
	per := max(b.N/rounds, 4*benchCallers)
	rates := make([][]float64, len(systems))
	var vsQUIC, vsTCP []float64
	b.ResetTimer()
	for range rounds {
		var r [3]float64
		for i, s := range systems {
			r[i] = throughput(b, s, per)
			rates[i] = append(rates[i], r[i])
		}
		vsQUIC = append(vsQUIC, r[0]/r[1])
		vsTCP = append(vsTCP, r[0]/r[2])
	}
	b.StopTimer()
	b.ReportMetric(median(rates[0]), "req/s")
	b.ReportMetric(median(rates[1]), "quic-req/s")
	b.ReportMetric(median(rates[2]), "tcptls-req/s")
	b.ReportMetric(median(vsQUIC), "ratio-vs-quic")
	b.ReportMetric(median(vsTCP), "ratio-vs-tcptls")
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
