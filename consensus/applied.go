package consensus

import "context"

// WaitApplied blocks until this node's state (its server FSM or client
// replica) has applied the log entry at idx, so that a write acknowledged
// to a caller is also in force on the node that answered. It returns
// ctx's error if ctx ends first and ErrClosed if the store closes.
func (s *Store) WaitApplied(ctx context.Context, idx uint64) error {
	return s.waitIndex(ctx, idx)
}
