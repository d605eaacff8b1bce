package main

// nemesis.go: the faults injected while the clients run. One at a time: wait until the
// cluster has a leader every node agrees on, wait a random interval, inject the next kind
// (the kinds are taken in a shuffled round so every kind gets its turn), undo it.

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"
)

// The nemesis kinds.
const (
	nemKill        = "kill"        // kill -9 the leader, restart it 0.2-5 s later
	nemFastRestart = "fastrestart" // kill -9 the leader, restart it at once, read through it
	nemPause       = "pause"       // SIGSTOP the leader for 1-5 s
	nemFollower    = "follower"    // kill -9 a follower, restart it 0.5-3 s later
	nemPartition   = "partition"   // cut the leader off from the other nodes (not the clients) 1-5 s; -netns only
)

var allNemeses = []string{nemKill, nemFastRestart, nemPause, nemFollower, nemPartition}

// parseNemeses checks a comma list of kinds ("" or "none" for no faults); partition needs
// the nodes in network namespaces (netns).
func parseNemeses(s string, netns bool) ([]string, error) {
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		ok := false
		for _, a := range allNemeses {
			ok = ok || a == k
		}
		if !ok {
			return nil, fmt.Errorf("unknown nemesis %q (known: %s)", k, strings.Join(allNemeses, ","))
		}
		if k == nemPartition && !netns {
			return nil, fmt.Errorf("nemesis %q needs -netns (the nodes in network namespaces of their own, so that the network between them can be cut; root on Linux)", k)
		}
		out = append(out, k)
	}
	return out, nil
}

// interval is a random duration in [min, max].
type interval struct{ min, max time.Duration }

// parseInterval reads "3s-6s" or a single duration such as "4s".
func parseInterval(s string) (interval, error) {
	lo, hi, found := strings.Cut(s, "-")
	a, err := time.ParseDuration(lo)
	if err != nil {
		return interval{}, err
	}
	if !found {
		return interval{a, a}, nil
	}
	b, err := time.ParseDuration(hi)
	if err != nil {
		return interval{}, err
	}
	if b < a {
		return interval{}, fmt.Errorf("interval %q: max below min", s)
	}
	return interval{a, b}, nil
}

func (iv interval) pick(rng *rand.Rand) time.Duration {
	if iv.max <= iv.min {
		return iv.min
	}
	return iv.min + time.Duration(rng.Int63n(int64(iv.max-iv.min)+1))
}

// fault is one injected fault, for the report.
type fault struct {
	Kind   string `json:"kind"`
	Node   int    `json:"node"`
	Leader bool   `json:"leader"` // the target was the leader
	At     int64  `json:"at_ns"`  // when the fault began, since the origin
	Undone int64  `json:"undone_ns"`
	Reads  int    `json:"reads,omitempty"` // fastrestart: reads the restarted node answered
}

// nemesis injects faults until its context ends.
type nemesis struct {
	c        *cluster
	kinds    []string
	every    interval
	rng      *rand.Rand
	target   *readTarget
	t0       time.Time
	readLead time.Duration // how long fastrestart steers reads at the restarted node

	mu     sync.Mutex
	faults []fault
}

func (nm *nemesis) now() int64 { return time.Since(nm.t0).Nanoseconds() }

// run injects faults until ctx is done; a fault in progress is undone at once then.
func (nm *nemesis) run(ctx context.Context) {
	var round []string
	for {
		if !sleepCtx(ctx, nm.every.pick(nm.rng)) {
			return
		}
		if _, err := nm.c.waitHealthy(ctx, 30*time.Second); err != nil {
			if ctx.Err() != nil {
				return
			}
			nm.c.logf("nemesis: %v; injecting the next fault anyway", err)
		}
		if len(round) == 0 {
			round = append([]string(nil), nm.kinds...)
			nm.rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		kind := round[0]
		round = round[1:]
		nm.inject(ctx, kind)
	}
}

// inject performs one fault of the given kind and undoes it.
func (nm *nemesis) inject(ctx context.Context, kind string) {
	leader, _ := nm.c.findLeader()
	if leader == nil {
		nm.c.logf("nemesis: no leader found; skipping %s", kind)
		return
	}
	target := leader
	if kind == nemFollower {
		var followers []*node
		for _, n := range nm.c.nodes {
			if n != leader && n.up() {
				followers = append(followers, n)
			}
		}
		if len(followers) == 0 {
			return
		}
		target = followers[nm.rng.Intn(len(followers))]
	}
	f := fault{Kind: kind, Node: target.id, Leader: target == leader}

	switch kind {
	case nemKill, nemFollower:
		wait := interval{200 * time.Millisecond, 5 * time.Second}
		if kind == nemFollower {
			wait = interval{500 * time.Millisecond, 3 * time.Second}
		}
		down := wait.pick(nm.rng)
		f.At = nm.now()
		nm.c.kill(target)
		nm.c.logf("nemesis: %s: killed node %d (leader: %v), restarting in %v", kind, target.id, f.Leader, down.Round(time.Millisecond))
		sleepCtx(ctx, down)
		nm.restart(target)
	case nemFastRestart:
		f.At = nm.now()
		nm.c.kill(target)
		nm.restart(target)
		// Steer reads at the restarted node from now until readLead after it answers
		// its first one (at most 10 s).
		nm.target.set(target, nm.readLead, 10*time.Second)
		if nm.c.waitServing(target, 5*time.Second) {
			nm.c.logf("nemesis: fastrestart: node %d (leader) killed and restarted, serving HTTP after %.0f ms; reads go to it until %v after it answers one",
				target.id, float64(nm.now()-f.At)/1e6, nm.readLead)
		} else {
			nm.c.logf("nemesis: fastrestart: node %d killed and restarted, but not serving HTTP after 5s", target.id)
		}
		for nm.target.get() != nil && sleepCtx(ctx, 50*time.Millisecond) {
		}
		f.Reads = nm.target.answeredReads()
		nm.c.logf("nemesis: fastrestart: node %d answered %d reads while they were steered at it", target.id, f.Reads)
	case nemPause:
		d := interval{time.Second, 5 * time.Second}.pick(nm.rng)
		f.At = nm.now()
		if err := nm.c.pause(target); err != nil {
			nm.c.logf("nemesis: pause node %d: %v", target.id, err)
			return
		}
		nm.c.logf("nemesis: pause: stopped node %d (leader) for %v", target.id, d.Round(time.Millisecond))
		sleepCtx(ctx, d)
		if err := nm.c.resume(target); err != nil {
			nm.c.logf("nemesis: resume node %d: %v", target.id, err)
		}
		nm.c.logf("nemesis: pause: resumed node %d", target.id)
	case nemPartition:
		// The clients still reach the cut-off leader: until it notices that it has lost
		// its majority, whatever it answers must still be linearizable. The fault counts
		// from when the last route is in place: while the routes go in (a few ms each),
		// the leader may still reach a majority and commit.
		d := interval{time.Second, 5 * time.Second}.pick(nm.rng)
		start := nm.now()
		err := nm.c.lab.partition(target.id)
		f.At = nm.now()
		if err != nil {
			nm.c.logf("nemesis: partition node %d: %v", target.id, err)
			if err := nm.c.lab.heal(); err != nil {
				nm.c.logf("nemesis: heal: %v", err)
			}
			return
		}
		nm.c.logf("nemesis: partition: cut node %d (leader) off from the other nodes (in %.0f ms) for %v; clients still reach it",
			target.id, float64(f.At-start)/1e6, d.Round(time.Millisecond))
		sleepCtx(ctx, d)
		if err := nm.c.lab.heal(); err != nil {
			nm.c.logf("nemesis: heal: %v", err)
		}
		nm.c.logf("nemesis: partition: healed node %d", target.id)
	}
	f.Undone = nm.now()
	nm.mu.Lock()
	nm.faults = append(nm.faults, f)
	nm.mu.Unlock()
}

func (nm *nemesis) restart(n *node) {
	if err := nm.c.restart(n); err != nil {
		nm.c.logf("nemesis: restarting node %d: %v", n.id, err)
		return
	}
	nm.c.logf("nemesis: restarted node %d", n.id)
}

func (nm *nemesis) list() []fault {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	return append([]fault(nil), nm.faults...)
}

// sleepCtx sleeps for d or until ctx ends; it reports whether the whole d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
