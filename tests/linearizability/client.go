package main

// client.go: the workload. Each client loops over random reads, writes and
// compare-and-sets on random keys through random nodes, and records every attempt with
// its call and return times on the run's monotonic clock. The recorder turns the
// attempts into the porcupine history: completed operations as they are, writes and
// CASes of unknown outcome with a return time at infinity, failed ones left out.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// outcome classifies an attempt.
type outcome string

const (
	outcomeOK      outcome = "ok"      // answered 200 (or 404 for a read of an absent key)
	outcomeFailed  outcome = "failed"  // certainly had no effect: left out of the history
	outcomeUnknown outcome = "unknown" // a write or CAS that may or may not have happened
)

// attempt is one client operation as recorded (all of them go to history.jsonl).
type attempt struct {
	Client  int      `json:"client"`
	Process int      `json:"process"` // porcupine's client id (see client.process)
	Node    int      `json:"node"`
	Input   kvInput  `json:"input"`
	Output  kvOutput `json:"output"`
	Outcome outcome  `json:"outcome"`
	Call    int64    `json:"call_ns"`   // since the run's origin
	Return  int64    `json:"return_ns"` // when the client got the answer or gave up
	Detail  string   `json:"detail,omitempty"`
}

// httpResult is the raw answer to one request: a status and body, or a transport error.
type httpResult struct {
	status int
	body   []byte
	err    error
}

// classify turns an answer into an outcome. A read that did not answer had no effect. A
// write that got a 4xx did not happen; a 5xx, a timeout or a broken connection leaves it
// unknown. A refused connection means the request was never sent, so it failed too.
func (r httpResult) classify(kind opKind) outcome {
	switch {
	case r.err == nil && r.status == http.StatusOK:
		return outcomeOK
	case r.err == nil && kind == opRead && r.status == http.StatusNotFound && errorCode(r.body) == "not_found":
		return outcomeOK
	case kind == opRead:
		return outcomeFailed
	case r.err == nil && r.status >= 400 && r.status < 500:
		return outcomeFailed
	case r.err != nil && errors.Is(r.err, syscall.ECONNREFUSED):
		return outcomeFailed
	default:
		return outcomeUnknown
	}
}

func (r httpResult) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	if r.status == http.StatusOK {
		return "200"
	}
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// errorCode is the "error" field of a JSON error answer.
func errorCode(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error
}

// doHTTP sends one request with a timeout and reads the whole answer.
func doHTTP(hc *http.Client, timeout time.Duration, method, u string, body []byte, contentType string) httpResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return httpResult{err: err}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return httpResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{err: err}
	}
	return httpResult{status: resp.StatusCode, body: b}
}

// kvURL is the URL of a key on a node.
func kvURL(n *node, key string) string {
	return "http://" + n.httpAddr + "/kv/" + key
}

// txnRequest is the body of POST /kv/txn.
type txnRequest struct {
	Compare []txnOp `json:"compare"`
	Success []txnOp `json:"success"`
	Failure []txnOp `json:"failure"`
}

type txnOp struct {
	Op    string  `json:"op"`
	Key   string  `json:"key"`
	Value *string `json:"value,omitempty"`
}

// readTarget steers reads at one node for a while: the fastrestart nemesis uses it to read
// through a freshly restarted leader from the moment it restarts until `lead` after the
// first read it answers (it can answer none until the cluster has a leader again), or
// until a hard deadline.
type readTarget struct {
	mu       sync.Mutex
	node     *node
	until    time.Time
	lead     time.Duration
	answered bool
	reads    int // reads the node answered while targeted
}

func (t *readTarget) set(n *node, lead, limit time.Duration) {
	t.mu.Lock()
	t.node, t.until, t.lead, t.answered, t.reads = n, time.Now().Add(limit), lead, false, 0
	t.mu.Unlock()
}

// answeredReads is how many reads the targeted node answered.
func (t *readTarget) answeredReads() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reads
}

// get is the node reads should go to now, or nil.
func (t *readTarget) get() *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.node != nil && time.Now().Before(t.until) {
		return t.node
	}
	return nil
}

// served notes that node n answered a read; the first answer starts the last stretch.
func (t *readTarget) served(n *node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.node != n || !time.Now().Before(t.until) {
		return
	}
	t.reads++
	if !t.answered {
		t.answered = true
		if end := time.Now().Add(t.lead); end.Before(t.until) {
			t.until = end
		}
	}
}

// workload holds what all clients share.
type workload struct {
	c           *cluster
	keys        []string
	consistency string // for reads: "linearizable", or "local" for the planted bug
	timeout     time.Duration
	target      *readTarget
	t0          time.Time

	nextProcess atomic.Int64 // porcupine client ids handed out so far

	mu       sync.Mutex
	attempts []attempt
}

func (w *workload) now() int64 { return time.Since(w.t0).Nanoseconds() }

func (w *workload) record(a attempt) {
	w.mu.Lock()
	w.attempts = append(w.attempts, a)
	w.mu.Unlock()
}

// client is one sequential client.
type client struct {
	w       *workload
	id      int
	process int // porcupine client id; a new one after each unknown outcome, since the
	// unfinished operation stays open forever and a process runs one operation at a time
	rng      *rand.Rand
	hc       *http.Client
	seq      int
	lastSeen map[string]kvState // per key, the value this client last saw (for CAS)
}

func newClient(w *workload, id int, seed int64) *client {
	return &client{
		w: w, id: id, process: int(w.nextProcess.Add(1) - 1),
		rng:      rand.New(rand.NewSource(seed)),
		hc:       &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		lastSeen: map[string]kvState{},
	}
}

// run issues operations until stop is closed. stop is only checked between operations, so
// no operation is cut short by the end of the run.
func (cl *client) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		cl.step()
	}
}

// step runs one random operation and records it.
func (cl *client) step() {
	w := cl.w
	key := w.keys[cl.rng.Intn(len(w.keys))]
	n := w.c.nodes[cl.rng.Intn(len(w.c.nodes))]
	var in kvInput
	switch p := cl.rng.Float64(); {
	case p < 0.5:
		in = kvInput{Kind: opRead, Key: key}
		if t := w.target.get(); t != nil {
			n = t
		}
	case p < 0.8:
		in = kvInput{Kind: opWrite, Key: key, Value: cl.newValue()}
	default:
		in = kvInput{Kind: opCAS, Key: key, Value: cl.newValue()}
		if seen, ok := cl.lastSeen[key]; ok && seen.Present {
			in.Expect = seen.Value
		} else {
			in.ExpectAbsent = true
		}
	}

	call := w.now()
	res, out := cl.send(n, in)
	ret := w.now()
	oc := res.classify(in.Kind)
	if oc == outcomeOK && in.Kind == opCAS {
		var ans struct {
			Succeeded *bool `json:"succeeded"`
		}
		if err := json.Unmarshal(res.body, &ans); err != nil || ans.Succeeded == nil {
			oc, res.err = outcomeUnknown, fmt.Errorf("unreadable txn answer %q", res.body)
		} else {
			out.Succeeded = *ans.Succeeded
		}
	}
	if oc == outcomeUnknown {
		out.Unknown = true
	}
	w.record(attempt{Client: cl.id, Process: cl.process, Node: n.id, Input: in, Output: out,
		Outcome: oc, Call: call, Return: ret, Detail: detailOf(oc, res)})

	switch oc {
	case outcomeOK:
		switch {
		case in.Kind == opRead:
			cl.lastSeen[key] = kvState{Present: out.Present, Value: out.Value}
			w.target.served(n)
		case in.Kind == opWrite || out.Succeeded:
			cl.lastSeen[key] = kvState{Present: true, Value: in.Value}
		}
	case outcomeUnknown:
		cl.process = int(w.nextProcess.Add(1) - 1)
		time.Sleep(20 * time.Millisecond)
	case outcomeFailed:
		// Do not spin on a node that is down or has no leader.
		time.Sleep(time.Duration(5+cl.rng.Intn(20)) * time.Millisecond)
	}
}

func detailOf(oc outcome, r httpResult) string {
	if oc == outcomeOK {
		return ""
	}
	return r.String()
}

// newValue is a value unique across the run.
func (cl *client) newValue() string {
	cl.seq++
	return fmt.Sprintf("c%d-%d", cl.id, cl.seq)
}

// send performs one operation against node n.
func (cl *client) send(n *node, in kvInput) (httpResult, kvOutput) {
	w := cl.w
	switch in.Kind {
	case opRead:
		r := doHTTP(cl.hc, w.timeout, http.MethodGet,
			kvURL(n, in.Key)+"?consistency="+url.QueryEscape(w.consistency), nil, "")
		var out kvOutput
		if r.err == nil && r.status == http.StatusOK {
			out = kvOutput{Present: true, Value: string(r.body)}
		}
		return r, out
	case opWrite:
		return doHTTP(cl.hc, w.timeout, http.MethodPut, kvURL(n, in.Key), []byte(in.Value), "application/octet-stream"), kvOutput{}
	default:
		cmp := txnOp{Op: "absent", Key: in.Key}
		if !in.ExpectAbsent {
			cmp = txnOp{Op: "equals", Key: in.Key, Value: &in.Expect}
		}
		body, _ := json.Marshal(txnRequest{
			Compare: []txnOp{cmp},
			Success: []txnOp{{Op: "put", Key: in.Key, Value: &in.Value}},
			Failure: []txnOp{},
		})
		return doHTTP(cl.hc, w.timeout, http.MethodPost, "http://"+n.httpAddr+"/kv/txn", body, "application/json"), kvOutput{}
	}
}

// history turns the attempts into porcupine operations: failed attempts are left out,
// unknown ones never return.
func (w *workload) history() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ops []porcupine.Operation
	for _, a := range w.attempts {
		ret := a.Return
		switch a.Outcome {
		case outcomeFailed:
			continue
		case outcomeUnknown:
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: a.Process, Input: a.Input, Call: a.Call,
			Output: a.Output, Return: ret, Metadata: fmt.Sprintf("client %d via node %d", a.Client, a.Node)})
	}
	return ops
}

// opCounts are the outcomes of one op kind.
type opCounts struct {
	ok, failed, unknown int
	casFalse            int // CASes answered 200 with succeeded=false (included in ok)
}

// counts tallies outcomes per op kind.
func (w *workload) counts() map[opKind]*opCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[opKind]*opCounts{opRead: {}, opWrite: {}, opCAS: {}}
	for _, a := range w.attempts {
		c := m[a.Input.Kind]
		switch a.Outcome {
		case outcomeOK:
			c.ok++
			if a.Input.Kind == opCAS && !a.Output.Succeeded {
				c.casFalse++
			}
		case outcomeFailed:
			c.failed++
		case outcomeUnknown:
			c.unknown++
		}
	}
	return m
}

// writeAck is a write or CAS answered 200, i.e. one that went through Raft.
type writeAck struct{ call, ret int64 }

// writeAcks are the acknowledged writes and CASes, in order of acknowledgement.
func (w *workload) writeAcks() []writeAck {
	w.mu.Lock()
	defer w.mu.Unlock()
	var acks []writeAck
	for _, a := range w.attempts {
		if a.Outcome == outcomeOK && a.Input.Kind != opRead {
			acks = append(acks, writeAck{a.Call, a.Return})
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].ret < acks[j].ret })
	return acks
}
