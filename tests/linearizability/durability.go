package main

// durability.go: -mode durability. A few writers PUT 2,000 unique keys through random
// nodes, each retried until acknowledged, while the leader is killed with -9 twice; then
// every node is killed at once and restarted. The check: every acknowledged write is
// there with its value (a linearizable listing), and once each node has applied the
// leader's commit index, every node's own (local) listing is the same.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

const (
	durabilityWrites  = 2000
	durabilityWriters = 4
)

// listItem is one entry of GET /kv?prefix=.
type listItem struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ValueBase64 string `json:"value_base64"`
}

// listAll pages through GET /kv?prefix=P on one node with the given consistency,
// retrying a page that fails until the timeout.
func listAll(hc *http.Client, n *node, prefix, consistency string, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	items := map[string]string{}
	after := ""
	for {
		q := url.Values{"prefix": {prefix}, "limit": {"10000"}, "consistency": {consistency}}
		if after != "" {
			q.Set("after", after)
		}
		r := doHTTP(hc, 10*time.Second, http.MethodGet, "http://"+n.httpAddr+"/kv?"+q.Encode(), nil, "")
		if r.err != nil || r.status != http.StatusOK {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("listing %s on node %d: %v", prefix, n.id, r)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var page struct {
			Items     []listItem `json:"items"`
			More      bool       `json:"more"`
			NextAfter *string    `json:"next_after"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			return nil, fmt.Errorf("listing on node %d: %w", n.id, err)
		}
		for _, it := range page.Items {
			v := it.Value
			if it.ValueBase64 != "" {
				v = "base64:" + it.ValueBase64
			}
			items[it.Key] = v
		}
		if !page.More || page.NextAfter == nil {
			return items, nil
		}
		after = *page.NextAfter
	}
}

// runDurability is the -mode durability run.
func runDurability(cfg config) int {
	rng := rand.New(rand.NewSource(cfg.seed))
	t0 := time.Now()
	c, err := clusterFor(cfg, t0)
	if err != nil {
		return harnessFailure(err)
	}
	defer c.shutdown()
	if err := c.start(context.Background()); err != nil {
		return harnessFailure(err)
	}
	c.logf("cluster of %d nodes up", cfg.nodes)

	keys := make([]string, durabilityWrites)
	values := make([]string, durabilityWrites)
	for i := range keys {
		keys[i] = fmt.Sprintf("d/%05d", i)
		values[i] = fmt.Sprintf("v%05d-%08x", i, rng.Uint32())
	}

	// Pace the writes so they spread over most of -duration (faster is not needed, and
	// slower happens on its own when the cluster is busy recovering).
	rate := time.Duration(float64(cfg.duration) * 0.8 / durabilityWrites)
	tokens := time.NewTicker(max(rate, time.Millisecond))
	defer tokens.Stop()
	giveUp := time.Now().Add(3*cfg.duration + time.Minute)

	var next, acked, attempts, retries atomic.Int64
	var writers sync.WaitGroup
	c.logf("%d writers: %d PUTs, one every %v; leader killed at 1/3 and 2/3", durabilityWriters, durabilityWrites, rate)
	for wi := 0; wi < durabilityWriters; wi++ {
		wrng := rand.New(rand.NewSource(rng.Int63()))
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
		writers.Add(1)
		go func() {
			defer writers.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= durabilityWrites {
					return
				}
				<-tokens.C
				// Retry the same key and value until acknowledged: an attempt of unknown
				// outcome that did happen is simply written again with the same value.
				for first := true; ; first = false {
					if time.Now().After(giveUp) {
						return
					}
					if !first {
						retries.Add(1)
					}
					attempts.Add(1)
					n := c.nodes[wrng.Intn(len(c.nodes))]
					r := doHTTP(hc, cfg.timeout, http.MethodPut, kvURL(n, keys[i]), []byte(values[i]), "application/octet-stream")
					if r.err == nil && r.status == http.StatusOK {
						acked.Add(1)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	// Kill the leader with -9 at a third and two thirds of the acknowledgements.
	kills := 0
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		for _, at := range []int64{durabilityWrites / 3, 2 * durabilityWrites / 3} {
			for acked.Load() < at && time.Now().Before(giveUp) {
				time.Sleep(20 * time.Millisecond)
			}
			var leader *node
			for leader == nil && time.Now().Before(giveUp) {
				if leader, _ = c.findLeader(); leader == nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if leader == nil {
				return
			}
			c.kill(leader)
			kills++
			down := interval{200 * time.Millisecond, 2 * time.Second}.pick(rng)
			c.logf("killed leader node %d at %d acknowledged writes; restarting in %v", leader.id, acked.Load(), down.Round(time.Millisecond))
			time.Sleep(down)
			if err := c.restart(leader); err != nil {
				c.logf("restarting node %d: %v", leader.id, err)
			}
		}
	}()
	writers.Wait()
	killer.Wait()
	c.logf("writes done: %d acknowledged, %d attempts (%d retries)", acked.Load(), attempts.Load(), retries.Load())
	if acked.Load() < durabilityWrites {
		return harnessFailure(fmt.Errorf("only %d of %d writes were acknowledged before giving up", acked.Load(), durabilityWrites))
	}

	// Crash every node at once, then restart them all.
	var crash sync.WaitGroup
	for _, n := range c.nodes {
		crash.Add(1)
		go func() {
			defer crash.Done()
			c.kill(n)
		}()
	}
	crash.Wait()
	c.logf("killed every node with -9; restarting them all")
	for _, n := range c.nodes {
		if err := c.restart(n); err != nil {
			return harnessFailure(err)
		}
	}
	leaderID, err := c.waitHealthy(context.Background(), 60*time.Second)
	if err != nil {
		return harnessFailure(fmt.Errorf("after the restart: %w", err))
	}
	leader := c.node(leaderID)
	c.logf("restarted; leader is node %d", leaderID)

	hc := &http.Client{Transport: &http.Transport{}}
	failures := 0

	// Check 1: every acknowledged write, read linearizably.
	got, err := listAll(hc, leader, "d/", "linearizable", 30*time.Second)
	if err != nil {
		return harnessFailure(err)
	}
	missing, wrong := 0, 0
	want := map[string]string{}
	for i, k := range keys {
		want[k] = values[i]
		v, ok := got[k]
		switch {
		case !ok:
			missing++
			if missing <= 10 {
				fmt.Printf("  MISSING %s (acknowledged with %q)\n", k, values[i])
			}
		case v != values[i]:
			wrong++
			if wrong <= 10 {
				fmt.Printf("  WRONG %s: %q, acknowledged %q\n", k, v, values[i])
			}
		}
	}
	extra := 0
	for k := range got {
		if _, ok := want[k]; !ok {
			extra++
		}
	}
	fmt.Printf("acknowledged writes: %d; after the crash: %d present with their value, %d missing, %d with another value, %d unexpected keys\n",
		durabilityWrites, durabilityWrites-missing-wrong, missing, wrong, extra)
	if missing+wrong+extra > 0 {
		failures++
	}

	// Check 2: once every node has applied the leader's commit index, every node's local
	// state is the same.
	converged := false
	var commit uint64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !converged {
		if s, err := c.status(leader, time.Second); err == nil && s.Role == "leader" {
			commit = s.CommittedIndex
			converged = true
			for _, st := range c.statuses(time.Second) {
				if st == nil || st.AppliedIndex < commit {
					converged = false
				}
			}
		}
		if !converged {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !converged {
		fmt.Printf("replicas: not every node applied the leader's commit index %d within 30s\n", commit)
		failures++
	} else {
		ref, err := listAll(hc, leader, "d/", "local", 10*time.Second)
		if err != nil {
			return harnessFailure(err)
		}
		same := true
		for _, n := range c.nodes {
			items, err := listAll(hc, n, "d/", "local", 10*time.Second)
			if err != nil {
				return harnessFailure(err)
			}
			diff := mapDiff(ref, items)
			fmt.Printf("  node %d (local, applied >= %d): %d keys, %d differ from the leader's\n", n.id, commit, len(items), diff)
			same = same && diff == 0
		}
		if same {
			fmt.Println("replicas: all equal")
		} else {
			fmt.Println("replicas: DIFFER")
			failures++
		}
	}
	fmt.Printf("leader kills during the writes: %d, then every node killed at once and restarted\n", kills)
	if failures == 0 {
		fmt.Println("durable: yes")
		fmt.Println("1 passed, 0 failed")
		return 0
	}
	fmt.Println("durable: NO")
	fmt.Println("0 passed, 1 failed")
	return 1
}

// mapDiff counts keys whose value differs or that only one side has.
func mapDiff(a, b map[string]string) int {
	n := 0
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			n++
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			n++
		}
	}
	return n
}
