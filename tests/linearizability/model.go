package main

// model.go: the sequential specification porcupine checks the history against, and the
// check itself. The key-value space is partitioned by key; each key is a register that
// holds a value or is absent, with read, write and compare-and-set.

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// opKind is the kind of a client operation.
type opKind string

const (
	opRead  opKind = "read"
	opWrite opKind = "write"
	opCAS   opKind = "cas"
)

// kvInput is what a client asked for.
type kvInput struct {
	Kind  opKind `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"` // write: the value; cas: the new value
	// cas: the compared value, or ExpectAbsent for "the key is absent".
	Expect       string `json:"expect,omitempty"`
	ExpectAbsent bool   `json:"expect_absent,omitempty"`
}

// kvOutput is what the client got back. Unknown marks a write or CAS whose outcome the
// client never learned (timeout, dropped connection, 5xx): it may or may not have happened.
type kvOutput struct {
	Present   bool   `json:"present,omitempty"`   // read: the key had a value
	Value     string `json:"value,omitempty"`     // read: that value
	Succeeded bool   `json:"succeeded,omitempty"` // cas: the comparison held and the put was done
	Unknown   bool   `json:"unknown,omitempty"`
}

// kvState is one key's state in the model.
type kvState struct {
	Present bool
	Value   string
}

// kvModel is the porcupine model: one register per key.
var kvModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.Kind {
		case opRead:
			return out.Present == st.Present && out.Value == st.Value, st
		case opWrite:
			// A write of unknown outcome is modelled by its never-ending interval: the
			// checker may place it anywhere after its call, including after everything.
			return true, kvState{Present: true, Value: in.Value}
		case opCAS:
			holds := (in.ExpectAbsent && !st.Present) || (!in.ExpectAbsent && st.Present && st.Value == in.Expect)
			if !out.Unknown && out.Succeeded != holds {
				return false, st
			}
			if holds {
				return true, kvState{Present: true, Value: in.Value}
			}
			return true, st
		}
		panic("unknown op kind " + string(in.Kind))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch in.Kind {
		case opRead:
			if !out.Present {
				return fmt.Sprintf("get(%s) -> absent", in.Key)
			}
			return fmt.Sprintf("get(%s) -> %s", in.Key, out.Value)
		case opWrite:
			if out.Unknown {
				return fmt.Sprintf("put(%s, %s) -> ?", in.Key, in.Value)
			}
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		default:
			exp := in.Expect
			if in.ExpectAbsent {
				exp = "absent"
			}
			res := fmt.Sprint(out.Succeeded)
			if out.Unknown {
				res = "?"
			}
			return fmt.Sprintf("cas(%s, %s -> %s) -> %s", in.Key, exp, in.Value, res)
		}
	},
	DescribeState: func(state any) string {
		st := state.(kvState)
		if !st.Present {
			return "absent"
		}
		return st.Value
	},
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
}

// partitionByKey splits a history into one sub-history per key, in key order.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(kvInput).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// pruneUnobserved drops writes and CASes of unknown outcome whose value no completed read
// returned and no successful CAS compared against.
//
// Why: each such operation never ends, so the checker may place it anywhere after its
// call, and a few dozen of them on one key make the search exponential. Dropping them is
// sound for a "linearizable" verdict: if the rest is linearizable, putting the dropped
// operations last (never observed, they change nothing anyone saw) linearizes the whole.
// It is not sound for "not linearizable" (a failed CAS may be explained by such a write),
// so a key whose pruned history fails is checked again in full.
func pruneUnobserved(history []porcupine.Operation) (kept []porcupine.Operation, dropped int) {
	observed := map[string]bool{}
	for _, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		switch {
		case in.Kind == opRead && out.Present:
			observed[out.Value] = true
		case in.Kind == opCAS && !out.Unknown && out.Succeeded && !in.ExpectAbsent:
			observed[in.Expect] = true
		}
	}
	for _, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if out.Unknown && !observed[in.Value] {
			dropped++
			continue
		}
		kept = append(kept, op)
	}
	return kept, dropped
}

// checkResult is the outcome of checking a history.
type checkResult struct {
	result       porcupine.CheckResult
	info         porcupine.LinearizationInfo
	pruned       int      // unknown-outcome operations left out (see pruneUnobserved)
	fullKeys     []string // keys that were checked again with every operation
	failedKeys   []string // keys whose history is not linearizable
	unknownKeys  []string // keys whose check timed out
	checkedOps   int      // operations in the history finally checked
	checkElapsed time.Duration
}

// checkHistory checks each key first without its unobserved unknown-outcome operations and,
// for a key that fails that way, again with all of them. When a key is not linearizable,
// one verbose check of the failing keys' histories gives the visualization. timeout
// bounds the per-key checks (the verbose pass gets at least a few seconds more).
func checkHistory(history []porcupine.Operation, timeout time.Duration) checkResult {
	start := time.Now()
	deadline := start.Add(timeout)
	budget := func() time.Duration {
		// porcupine takes a timeout of 0 as "none": never pass less than a millisecond.
		return max(time.Until(deadline), time.Millisecond)
	}
	var res checkResult
	var failing []porcupine.Operation
	for _, keyOps := range partitionByKey(history) {
		key := keyOps[0].Input.(kvInput).Key
		kept, dropped := pruneUnobserved(keyOps)
		r := porcupine.CheckOperationsTimeout(kvModel, kept, budget())
		if r != porcupine.Ok && dropped > 0 {
			res.fullKeys = append(res.fullKeys, key)
			kept, dropped = keyOps, 0
			r = porcupine.CheckOperationsTimeout(kvModel, kept, budget())
		}
		switch r {
		case porcupine.Illegal:
			res.failedKeys = append(res.failedKeys, key)
			failing = append(failing, kept...)
		case porcupine.Unknown:
			res.unknownKeys = append(res.unknownKeys, key)
		}
		res.pruned += dropped
		res.checkedOps += len(kept)
	}
	switch {
	case len(res.failedKeys) > 0:
		res.result = porcupine.Illegal
		_, res.info = porcupine.CheckOperationsVerbose(kvModel, failing, max(budget(), 10*time.Second))
	case len(res.unknownKeys) > 0:
		res.result = porcupine.Unknown
	default:
		res.result = porcupine.Ok
	}
	res.checkElapsed = time.Since(start)
	return res
}
