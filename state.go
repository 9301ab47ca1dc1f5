package idem

import (
	"fmt"
	"strings"
)

// RecordState is the stage of a stored record, as [Store.Records],
// [Store.Lookup], the admin handler and the idem CLI name it.
type RecordState string

// The record states; [RecordStates] lists them.
const (
	// StateInProgress: owned by a live call, of this process or, with a
	// shared backend, of another one holding its lease.
	StateInProgress RecordState = "in_progress"
	// StateOrphaned: in progress, but its owner is gone (see OrphanPolicy).
	StateOrphaned RecordState = "orphaned"
	// StateCompleted: a result is stored and replayed.
	StateCompleted RecordState = "completed"
	// StateFailed: a permanent failure is stored and replayed.
	StateFailed RecordState = "failed"
	// StateTooLarge: the result exceeded MaxValueSize; only its size is
	// stored.
	StateTooLarge RecordState = "too_large"
	// StateCorrupt: the stored bytes cannot be decoded (ErrCorrupt).
	StateCorrupt RecordState = "corrupt"
)

// recordStates is the list RecordStates returns.
var recordStates = []RecordState{StateInProgress, StateOrphaned, StateCompleted, StateFailed, StateTooLarge, StateCorrupt}

// RecordStates returns every RecordState.
func RecordStates() []RecordState { return append([]RecordState(nil), recordStates...) }

// ParseRecordState returns the state called name, or an error that lists
// the states there are.
func ParseRecordState(name string) (RecordState, error) {
	for _, s := range recordStates {
		if string(s) == name {
			return s, nil
		}
	}
	names := make([]string, len(recordStates))
	for i, s := range recordStates {
		names[i] = string(s)
	}
	return "", fmt.Errorf("unknown record state %q: want one of %s", name, strings.Join(names, ", "))
}
