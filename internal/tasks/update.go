package tasks

import (
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// Limits on what an agent's update may carry besides the artifact's bytes
// (bounded by the node's chunk limit already): names and messages are for
// people and logs, not payloads.
const (
	MaxArtifactName  = 256
	MaxStatusMessage = 4096
)

// DecodeUpdate turns one chunk of a task's answer — untrusted bytes from
// its agent — into the event to record: a TaskUpdate with exactly one of a
// non-final status or an artifact. The error says what to fix.
func DecodeUpdate(data []byte) (*meshnodev1.TaskEvent, error) {
	u := &meshnodev1.TaskUpdate{}
	if err := proto.Unmarshal(data, u); err != nil {
		return nil, errorf(codes.InvalidArgument, "the agent sent a chunk that is not a TaskUpdate (%v); serve tasks with HandleTask, or send TaskUpdate messages as chunk data", err)
	}
	switch x := u.GetUpdate().(type) {
	case *meshnodev1.TaskUpdate_Status:
		switch st := x.Status.GetState(); st {
		case meshnodev1.TaskState_TASK_STATE_WORKING, meshnodev1.TaskState_TASK_STATE_INPUT_REQUIRED:
		default:
			return nil, errorf(codes.InvalidArgument, "the agent sent status %s; a handler may report WORKING or INPUT_REQUIRED, and ends a task by returning", st)
		}
		if err := checkText("status message", x.Status.GetMessage(), MaxStatusMessage); err != nil {
			return nil, err
		}
		return &meshnodev1.TaskEvent{Event: &meshnodev1.TaskEvent_Status{Status: x.Status}}, nil
	case *meshnodev1.TaskUpdate_Artifact:
		if err := checkText("artifact name", x.Artifact.GetName(), MaxArtifactName); err != nil {
			return nil, err
		}
		return &meshnodev1.TaskEvent{Event: &meshnodev1.TaskEvent_Artifact{Artifact: x.Artifact}}, nil
	}
	return nil, errorf(codes.InvalidArgument, "the agent sent an empty TaskUpdate; set status or artifact")
}

func checkText(what, s string, limit int) error {
	if len(s) > limit {
		return errorf(codes.InvalidArgument, "%s is %d bytes, over the limit of %d", what, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return errorf(codes.InvalidArgument, "%s is not UTF-8", what)
	}
	return nil
}
