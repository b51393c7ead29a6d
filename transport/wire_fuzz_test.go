package transport

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'}, 16)
	f.Add([]byte{0, 0, 0, 5, 'a'}, 16)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, 1024)
	f.Add([]byte{0, 0}, 16)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<20 {
			max = 1 << 20
		}
		r := bytes.NewReader(data)
		for {
			frame, err := ReadFrame(r, max)
			if err != nil {
				if errors.Is(err, io.EOF) && !errors.Is(err, ErrBadFrame) && r.Len() != 0 {
					t.Fatalf("clean EOF with %d bytes unread", r.Len())
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(frame) > max {
				t.Fatalf("frame of %d bytes above limit %d", len(frame), max)
			}
			// Round trip: re-encoding yields the bytes consumed.
			enc := append(appendFrameHeader(nil, len(frame)), frame...)
			got, err := ReadFrame(bytes.NewReader(enc), max)
			if err != nil || !bytes.Equal(got, frame) {
				t.Fatalf("re-read: %q %v", got, err)
			}
		}
	})
}

func FuzzStreamHeader(f *testing.F) {
	f.Add([]byte{1, 5, 'p', 'r', 'o', 'b', 'e', 0})
	f.Add([]byte{2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add([]byte{0x7f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := readChannel(bytes.NewReader(data))
		if err != nil {
			if len(data) > 0 && !errors.Is(err, ErrUnknownChannel) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if ch == chanInvalid || ch >= chanLimit {
			t.Fatalf("accepted channel %d", ch)
		}
		hdr, body, err := parseRequest(data[1:])
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(hdr.Method) > maxMethodLen || hdr.Timeout < 0 {
			t.Fatalf("bad header accepted: %+v", hdr)
		}
		// Round trip through the encoder.
		enc := appendRequest(nil, hdr, body)
		h2, b2, err := parseRequest(enc)
		if err != nil || h2 != hdr || !bytes.Equal(b2, body) {
			t.Fatalf("round trip: %+v %q %v, want %+v %q", h2, b2, err, hdr, body)
		}
	})
}
