// Package faultconn wraps a net.PacketConn to inject faults for tests and
// e2e runs: a seeded drop rate, added delay with jitter, and a partition set
// of addresses whose traffic is black-holed in both directions. Every knob
// can change while traffic flows. (This kernel has no netem.)
package faultconn

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// Config sets the initial faults. The zero value injects none.
type Config struct {
	// Seed makes drop and jitter decisions reproducible.
	Seed uint64
	// DropRate is the probability in [0,1] that an outgoing packet is lost.
	DropRate float64
	// Delay is added to every outgoing packet; Jitter adds up to that much
	// more, uniformly. Delayed packets keep their order.
	Delay, Jitter time.Duration
}

// Validate checks the ranges.
func (c Config) Validate() error {
	switch {
	case c.DropRate < 0 || c.DropRate > 1:
		return errors.New("faultconn: DropRate must be in [0,1]")
	case c.Delay < 0 || c.Jitter < 0:
		return errors.New("faultconn: Delay and Jitter must not be negative")
	}
	return nil
}

// Stats counts what the wrapper did.
type Stats struct {
	Sent, Dropped, Partitioned, Delayed uint64
}

// Conn is the fault-injecting PacketConn. Use it in place of the socket
// (transport.Config.PacketConn).
type Conn struct {
	net.PacketConn

	mu          sync.Mutex
	rng         *rand.Rand
	cfg         Config
	partitioned map[string]bool
	stats       Stats

	queue  chan delayed
	done   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup
}

type delayed struct {
	due  time.Time
	b    []byte
	addr net.Addr
}

// New wraps pc. Closing the Conn closes pc.
func New(pc net.PacketConn, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Conn{
		PacketConn:  pc,
		rng:         rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		cfg:         cfg,
		partitioned: map[string]bool{},
		queue:       make(chan delayed, 4096),
		done:        make(chan struct{}),
	}
	c.wg.Go(c.delayLine)
	return c, nil
}

// Listen opens a UDP socket on addr and wraps it.
func Listen(addr string, cfg Config) (*Conn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := New(pc, cfg)
	if err != nil {
		pc.Close()
	}
	return c, err
}

// SetDropRate changes the loss probability.
func (c *Conn) SetDropRate(p float64) {
	c.mu.Lock()
	c.cfg.DropRate = min(max(p, 0), 1)
	c.mu.Unlock()
}

// SetDelay changes the added delay and jitter.
func (c *Conn) SetDelay(delay, jitter time.Duration) {
	c.mu.Lock()
	c.cfg.Delay, c.cfg.Jitter = max(delay, 0), max(jitter, 0)
	c.mu.Unlock()
}

// Partition black-holes all traffic to and from addrs (host:port as the
// socket sees them).
func (c *Conn) Partition(addrs ...string) {
	c.mu.Lock()
	for _, a := range addrs {
		c.partitioned[a] = true
	}
	c.mu.Unlock()
}

// Heal removes addrs from the partition set; with no arguments, all.
func (c *Conn) Heal(addrs ...string) {
	c.mu.Lock()
	if len(addrs) == 0 {
		clear(c.partitioned)
	}
	for _, a := range addrs {
		delete(c.partitioned, a)
	}
	c.mu.Unlock()
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// WriteTo sends b to addr subject to the faults. A lost packet reports
// success, as the network would.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	switch {
	case c.partitioned[addr.String()]:
		c.stats.Partitioned++
		c.mu.Unlock()
		return len(b), nil
	case c.cfg.DropRate > 0 && c.rng.Float64() < c.cfg.DropRate:
		c.stats.Dropped++
		c.mu.Unlock()
		return len(b), nil
	}
	delay := c.cfg.Delay
	if c.cfg.Jitter > 0 {
		delay += time.Duration(c.rng.Int64N(int64(c.cfg.Jitter)))
	}
	c.stats.Sent++
	if delay == 0 {
		c.mu.Unlock()
		return c.PacketConn.WriteTo(b, addr)
	}
	c.stats.Delayed++
	c.mu.Unlock()
	d := delayed{due: time.Now().Add(delay), b: append([]byte(nil), b...), addr: addr}
	select {
	case c.queue <- d:
	case <-c.done:
		return 0, net.ErrClosed
	default: // the delay line is full: the "router" drops
	}
	return len(b), nil
}

// ReadFrom returns the next packet not from a partitioned address.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		c.mu.Lock()
		blocked := c.partitioned[addr.String()]
		if blocked {
			c.stats.Partitioned++
		}
		c.mu.Unlock()
		if !blocked {
			return n, addr, nil
		}
	}
}

func (c *Conn) delayLine() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case d := <-c.queue:
			if wait := time.Until(d.due); wait > 0 {
				t.Reset(wait)
				select {
				case <-t.C:
				case <-c.done:
					return
				}
			}
			c.PacketConn.WriteTo(d.b, d.addr)
		case <-c.done:
			return
		}
	}
}

// Close stops the delay line (dropping queued packets) and closes the socket.
func (c *Conn) Close() error {
	c.closed.Do(func() { close(c.done) })
	err := c.PacketConn.Close()
	c.wg.Wait()
	return err
}

// SetReadBuffer, SetWriteBuffer and SyscallConn pass through to a UDP
// socket so quic-go can size its buffers.
func (c *Conn) SetReadBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *Conn) SetWriteBuffer(n int) error {
	if s, ok := c.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return errors.ErrUnsupported
}

func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if s, ok := c.PacketConn.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		return s.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
