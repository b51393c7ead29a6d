package authz

import (
	"errors"
	"testing"
)

// The decoder takes operator files and, through the API, any bytes: it
// must never panic, every failure must be an ErrInvalid naming the file,
// and whatever it accepts must compile and survive a round trip.
func FuzzDecodeYAML(f *testing.F) {
	f.Add([]byte(seedPolicy))
	f.Add([]byte("mode: deny\n"))
	f.Add([]byte("bindings:\n  - agent: a\n    roles: [r]\ncall_rules:\n  - from_role: r\n    to_capability: \"*a?*\"\n    action: allow\n"))
	f.Add([]byte("call_rules: {x: 1}\n"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeYAML("f.yaml", data)
		if err != nil {
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Source != "f.yaml" {
				t.Fatalf("error %v is not a FieldError naming the file", err)
			}
			return
		}
		e, err := Compile(p, 1)
		if err != nil {
			t.Fatalf("decoded policy does not compile: %v", err)
		}
		e.Call(Subject{ID: "n/a"}, "x.y", &Subject{ID: "n/b"})
		out, err := EncodeYAML(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeYAML("f.yaml", out); err != nil {
			t.Fatalf("re-decoding %q: %v", out, err)
		}
	})
}
