package tasks

import (
	"testing"

	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func update(u *meshnodev1.TaskUpdate) []byte {
	b, _ := proto.Marshal(u)
	return b
}

func TestDecodeUpdate(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"artifact", update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Artifact{Artifact: &meshnodev1.TaskArtifact{Name: "out", Data: []byte("x")}}}), true},
		{"working", update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Status{Status: &meshnodev1.TaskStatus{State: meshnodev1.TaskState_TASK_STATE_WORKING}}}), true},
		{"final state", update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Status{Status: &meshnodev1.TaskStatus{State: meshnodev1.TaskState_TASK_STATE_COMPLETED}}}), false},
		{"empty", nil, false},
		{"garbage", []byte{0xff, 0xff, 0xff}, false},
		{"long name", update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Artifact{Artifact: &meshnodev1.TaskArtifact{Name: string(make([]byte, MaxArtifactName+1))}}}), false},
	} {
		ev, err := DecodeUpdate(tc.data)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err=%v; want ok=%v", tc.name, err, tc.ok)
		}
		if err == nil && ev.GetStatus() == nil && ev.GetArtifact() == nil {
			t.Errorf("%s: an event with nothing in it", tc.name)
		}
	}
}

// FuzzDecodeUpdate: an agent's chunk is untrusted; decoding never panics,
// and whatever it accepts is a recordable, non-final event.
func FuzzDecodeUpdate(f *testing.F) {
	f.Add(update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Artifact{Artifact: &meshnodev1.TaskArtifact{Name: "n", Data: []byte("d")}}}))
	f.Add(update(&meshnodev1.TaskUpdate{Update: &meshnodev1.TaskUpdate_Status{Status: &meshnodev1.TaskStatus{State: 3, Message: "m"}}}))
	f.Add([]byte{0x0a, 0x02, 0x08, 0x04})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeUpdate(data)
		if err != nil {
			return
		}
		if IsFinal(ev.GetStatus().GetState()) {
			t.Fatalf("accepted a final state from an agent: %v", ev)
		}
		if a := ev.GetArtifact(); a != nil && len(a.GetName()) > MaxArtifactName {
			t.Fatalf("accepted an artifact name of %d bytes", len(a.GetName()))
		}
		if ev.GetStatus() == nil && ev.GetArtifact() == nil {
			t.Fatalf("accepted an empty update")
		}
	})
}
