package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// chunk is the most ReadFrame may allocate ahead of the bytes it has.
const chunk = 64 << 10

// A peer that announces a large frame and sends a little of it must cost
// us about what it sent, not what it announced.
func TestReadFrameAllocatesAsBytesArrive(t *testing.T) {
	const announced, sent, rounds = 4 << 20, 100, 16
	in := binary.BigEndian.AppendUint32(nil, announced)
	in = append(in, make([]byte, sent)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range rounds {
		_, err := ReadFrame(bytes.NewReader(in), announced)
		if !errors.Is(err, ErrBadFrame) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated frame: %v, want ErrBadFrame and io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > rounds*(chunk+4096) {
		t.Fatalf("%d truncated frames announcing %d bytes allocated %d bytes", rounds, announced, got)
	}
}

// A whole frame still arrives intact across many chunks.
func TestReadFrameLargeFrameIntact(t *testing.T) {
	want := make([]byte, 3*chunk+17)
	for i := range want {
		want[i] = byte(i * 7)
	}
	in := append(appendFrameHeader(nil, len(want)), want...)
	got, err := ReadFrame(iotestHalfReader{bytes.NewReader(in)}, len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, err %v; want %d bytes intact", len(got), err, len(want))
	}
	if cap(got) > 2*len(want) {
		t.Fatalf("buffer of cap %d for a %d-byte frame", cap(got), len(want))
	}
}

// iotestHalfReader returns at most half of what each Read asks for, as a
// slow network would.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }
