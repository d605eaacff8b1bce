package main

// Hand-made histories with known verdicts, to show the model and the checking procedure
// (pruning included) say what they should.

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const never = math.MaxInt64

func op(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func read(k string) kvInput        { return kvInput{Kind: opRead, Key: k} }
func write(k, v string) kvInput    { return kvInput{Kind: opWrite, Key: k, Value: v} }
func cas(k, exp, v string) kvInput { return kvInput{Kind: opCAS, Key: k, Expect: exp, Value: v} }
func casAbsent(k, v string) kvInput {
	return kvInput{Kind: opCAS, Key: k, ExpectAbsent: true, Value: v}
}
func got(v string) kvOutput             { return kvOutput{Present: true, Value: v} }
func casResult(succeeded bool) kvOutput { return kvOutput{Succeeded: succeeded} }

var (
	absent  = kvOutput{}
	unknown = kvOutput{Unknown: true}
)

func TestHistories(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"read of an absent key", []porcupine.Operation{
			op(0, 0, 1, read("a"), absent),
		}, porcupine.Ok},
		{"stale read after a completed write", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 20, 30, read("a"), absent),
		}, porcupine.Illegal},
		{"read concurrent with a write may see either", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 5, 30, read("a"), absent),
			op(2, 6, 31, read("a"), got("1")),
		}, porcupine.Ok},
		{"a read cannot go back in time", []porcupine.Operation{
			op(0, 0, 100, write("a", "1"), kvOutput{}),
			op(1, 5, 10, read("a"), got("1")),
			op(2, 20, 30, read("a"), absent),
		}, porcupine.Illegal},
		{"unknown write observed later", []porcupine.Operation{
			op(0, 0, never, write("a", "1"), unknown),
			op(1, 50, 60, read("a"), got("1")),
		}, porcupine.Ok},
		{"unknown write never observed", []porcupine.Operation{
			op(0, 0, never, write("a", "1"), unknown),
			op(1, 50, 60, read("a"), absent),
		}, porcupine.Ok},
		{"CAS on absent, then a value", []porcupine.Operation{
			op(0, 0, 10, casAbsent("a", "1"), casResult(true)),
			op(1, 20, 30, cas("a", "1", "2"), casResult(true)),
			op(2, 40, 50, read("a"), got("2")),
		}, porcupine.Ok},
		{"CAS that should have failed", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 20, 30, casAbsent("a", "2"), casResult(true)),
		}, porcupine.Illegal},
		{"CAS that should have succeeded", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 20, 30, cas("a", "1", "2"), casResult(false)),
		}, porcupine.Illegal},
		{"a failed CAS explained only by an unobserved unknown write", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 20, never, write("a", "x"), unknown),
			op(2, 30, 40, cas("a", "1", "2"), casResult(false)),
		}, porcupine.Ok},
		{"keys are independent", []porcupine.Operation{
			op(0, 0, 10, write("a", "1"), kvOutput{}),
			op(1, 20, 30, read("b"), absent),
			op(2, 40, 50, read("a"), got("1")),
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkHistory(tc.ops, 10*time.Second).result; got != tc.want {
				t.Errorf("checkHistory: %v, want %v", got, tc.want)
			}
			if got := porcupine.CheckOperationsTimeout(kvModel, tc.ops, 10*time.Second); got != tc.want {
				t.Errorf("porcupine on the whole history: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPruneKeepsObservedUnknowns(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, 0, never, write("a", "seen"), unknown),
		op(1, 0, never, write("a", "unseen"), unknown),
		op(2, 0, never, cas("a", "seen", "cas-seen"), unknown),
		op(3, 50, 60, read("a"), got("seen")),
		op(4, 70, 80, cas("a", "cas-seen", "z"), casResult(true)),
	}
	kept, dropped := pruneUnobserved(ops)
	if dropped != 1 || len(kept) != 4 {
		t.Fatalf("dropped %d, kept %d; want 1 and 4", dropped, len(kept))
	}
	for _, o := range kept {
		if o.Input.(kvInput).Value == "unseen" {
			t.Fatal("the unobserved write was kept")
		}
	}
}
