package main

// failover.go: -mode failover, a benchmark of leader failover. Wire, then etcd, each a
// 3-member cluster on 127.0.0.1, go through the same nemesis: leader kills (kill -9, the
// member restarted once the fault is measured) and leader pauses (SIGSTOP, SIGCONT once
// the fault is measured or after at most -fault-limit), alternating, each injected on a
// healthy cluster (every member names the same leader and a write is acknowledged).
//
// Meanwhile a stream of PUTs of new keys, one every -put-every with a short client
// timeout, goes round-robin to the members other than the faulted one. The recovery time
// of a fault is from the fault (the signal sent) to the first acknowledged PUT that was
// sent after it; the new-leader time is until a surviving member first names another
// leader. An open-loop stream rather than a few sequential writers: a writer stuck in a
// request to a member that cannot answer would hide a recovery for up to its timeout.
//
// At the end every acknowledged key must read back with its value (Wire: a linearizable
// listing, GET /kv?prefix=; etcd: POST /v3/kv/range, linearizable by default).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// failoverConfig is the part of the command line only -mode failover reads.
type failoverConfig struct {
	systemsFlag   string
	systems       []string
	kills, pauses int
	etcd          string
	putEvery      time.Duration
	putTimeout    time.Duration
	maxInFlight   int
	faultLimit    time.Duration
	settleFlag    string
	settle        interval
	wireHeartbeat time.Duration
	wireElectFlag string
	wireElection  interval
	etcdHeartbeat time.Duration
	etcdElection  time.Duration
}

func failoverFlags(f *failoverConfig) {
	flag.StringVar(&f.systemsFlag, "systems", "wire,etcd", "failover: the systems to run, in order (wire, etcd)")
	flag.IntVar(&f.kills, "kills", 10, "failover: leader kills (kill -9) per system")
	flag.IntVar(&f.pauses, "pauses", 10, "failover: leader pauses (SIGSTOP) per system")
	flag.StringVar(&f.etcd, "etcd", "etcd", "failover: the etcd binary")
	flag.DurationVar(&f.putEvery, "put-every", 10*time.Millisecond, "failover: one PUT of a new key every this long")
	flag.DurationVar(&f.putTimeout, "put-timeout", 500*time.Millisecond, "failover: client timeout of each PUT")
	flag.IntVar(&f.maxInFlight, "max-inflight", 100, "failover: most PUTs in flight at once (a tick with none free is skipped)")
	flag.DurationVar(&f.faultLimit, "fault-limit", 10*time.Second, "failover: longest a fault lasts (the member is restarted or resumed then, recovered or not)")
	flag.StringVar(&f.settleFlag, "settle", "1s-1.5s", "failover: wait on a healthy cluster before each fault (range min-max or one duration)")
	flag.DurationVar(&f.wireHeartbeat, "wire-heartbeat", 100*time.Millisecond, "failover: Wire's Raft heartbeat")
	flag.StringVar(&f.wireElectFlag, "wire-election", "750ms-1500ms", "failover: Wire's randomized election timeout range")
	flag.DurationVar(&f.etcdHeartbeat, "etcd-heartbeat", 100*time.Millisecond, "failover: etcd's --heartbeat-interval")
	flag.DurationVar(&f.etcdElection, "etcd-election", 1000*time.Millisecond, "failover: etcd's --election-timeout (each follower draws from [t, 2t))")
}

func (f *failoverConfig) check() error {
	for _, s := range strings.Split(f.systemsFlag, ",") {
		s = strings.TrimSpace(s)
		if s != "wire" && s != "etcd" {
			return fmt.Errorf("-systems: unknown system %q (known: wire, etcd)", s)
		}
		if slices.Contains(f.systems, s) {
			return fmt.Errorf("-systems: %s twice", s)
		}
		f.systems = append(f.systems, s)
	}
	var err error
	if f.settle, err = parseInterval(f.settleFlag); err != nil {
		return fmt.Errorf("-settle: %w", err)
	}
	if f.wireElection, err = parseInterval(f.wireElectFlag); err != nil {
		return fmt.Errorf("-wire-election: %w", err)
	}
	switch {
	case f.kills < 0 || f.pauses < 0 || f.kills+f.pauses == 0:
		return errors.New("-kills and -pauses must not be negative, and not both 0")
	case f.putEvery <= 0 || f.putTimeout <= 0 || f.maxInFlight < 1 || f.faultLimit <= 0:
		return errors.New("-put-every, -put-timeout, -max-inflight and -fault-limit must be positive")
	case f.wireHeartbeat <= 0 || f.etcdHeartbeat <= 0 || f.etcdElection <= 0:
		return errors.New("the timers must be positive")
	}
	if slices.Contains(f.systems, "etcd") {
		p, err := exec.LookPath(f.etcd)
		if err != nil {
			return fmt.Errorf("-etcd: %w (Debian: apt-get install etcd-server)", err)
		}
		f.etcd = p
	}
	return nil
}

// contender is one system under the benchmark: a 3-member cluster and its client API.
type contender interface {
	name() string
	members() []*node
	start(ctx context.Context) error
	restart(n *node) error
	shutdown()
	// leaderOf asks member n whom it follows: the leader (nil if it knows none) and its term.
	leaderOf(n *node, timeout time.Duration) (*node, uint64, error)
	put(hc *http.Client, n *node, key, value string, timeout time.Duration) error
	// readAll reads every key under prefix through member n, linearizably.
	readAll(n *node, prefix string) (map[string]string, error)
	settings() string
}

// ---- Wire ----

type wireContender struct {
	c   *cluster
	hc  *http.Client
	cfg failoverConfig
	ver string
}

func (w *wireContender) name() string                    { return "wire" }
func (w *wireContender) members() []*node                { return w.c.nodes }
func (w *wireContender) start(ctx context.Context) error { return w.c.start(ctx) }
func (w *wireContender) restart(n *node) error           { return w.c.restart(n) }
func (w *wireContender) shutdown()                       { w.c.shutdown() }

func (w *wireContender) leaderOf(n *node, timeout time.Duration) (*node, uint64, error) {
	s, err := w.c.status(n, timeout)
	if err != nil {
		return nil, 0, err
	}
	id := s.leaderID()
	if id < 1 || id > len(w.c.nodes) {
		return nil, s.Term, nil
	}
	return w.c.node(id), s.Term, nil
}

func (w *wireContender) put(hc *http.Client, n *node, key, value string, timeout time.Duration) error {
	r := doHTTP(hc, timeout, http.MethodPut, kvURL(n, key), []byte(value), "application/octet-stream")
	if r.err == nil && r.status != http.StatusOK {
		return errors.New(r.String())
	}
	return r.err
}

func (w *wireContender) readAll(n *node, prefix string) (map[string]string, error) {
	return listAll(w.hc, n, prefix, "linearizable", 60*time.Second)
}

func (w *wireContender) settings() string {
	return fmt.Sprintf("%s: heartbeat %v, election timeout drawn from [%v, %v] per wait, pre-vote always on; "+
		"every write fsynced on a quorum before it is acknowledged; HTTP API PUT /kv/{key}",
		w.ver, w.cfg.wireHeartbeat, w.cfg.wireElection.min, w.cfg.wireElection.max)
}

// ---- etcd ----

type etcdContender struct {
	bin     string
	t0      time.Time
	cfg     failoverConfig
	nodes   []*node
	initial string // --initial-cluster
	hc      *http.Client
	ver     string

	mu  sync.Mutex
	ids map[uint64]*node // member id -> member
}

func newEtcd(cfg failoverConfig, out string, t0 time.Time) (*etcdContender, error) {
	e := &etcdContender{bin: cfg.etcd, t0: t0, cfg: cfg, ids: map[uint64]*node{},
		hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	var initial []string
	for i := 1; i <= 3; i++ {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		n := &node{id: i,
			httpAddr: fmt.Sprintf("127.0.0.1:%d", cp),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", pp),
			dataDir:  filepath.Join(out, fmt.Sprintf("e%d-data", i)),
			logPath:  filepath.Join(out, fmt.Sprintf("e%d.log", i)),
		}
		e.nodes = append(e.nodes, n)
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i, n.raftAddr))
	}
	e.initial = strings.Join(initial, ",")
	e.ver = firstLine(e.bin, "--version") // "etcd Version: 3.4.23"
	return e, nil
}

func (e *etcdContender) name() string     { return "etcd" }
func (e *etcdContender) members() []*node { return e.nodes }

func (e *etcdContender) args(n *node) []string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return []string{
		"--name", fmt.Sprintf("e%d", n.id),
		"--data-dir", n.dataDir,
		"--listen-client-urls", "http://" + n.httpAddr,
		"--advertise-client-urls", "http://" + n.httpAddr,
		"--listen-peer-urls", "http://" + n.raftAddr,
		"--initial-advertise-peer-urls", "http://" + n.raftAddr,
		// Read on the first start only: a restart finds the membership in its data dir.
		"--initial-cluster", e.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "wire-failover",
		"--heartbeat-interval", ms(e.cfg.etcdHeartbeat),
		"--election-timeout", ms(e.cfg.etcdElection),
		"--pre-vote=true",
		"--logger", "zap",
		"--log-level", "info",
	}
}

func (e *etcdContender) restart(n *node) error {
	return spawn(n, e.t0, fmt.Sprintf("etcd member e%d", n.id), e.bin, e.args(n), nil)
}

func (e *etcdContender) start(ctx context.Context) error {
	for _, n := range e.nodes {
		if err := e.restart(n); err != nil {
			return err
		}
	}
	// Every member answers and names the same leader; learn the member ids.
	deadline := time.Now().Add(60 * time.Second)
	for {
		all := true
		for _, n := range e.nodes {
			st, err := e.status(n, time.Second)
			if err != nil || st.Leader == 0 {
				all = false
				continue
			}
			e.mu.Lock()
			e.ids[uint64(st.Header.MemberID)] = n
			e.mu.Unlock()
		}
		if all && len(e.ids) == len(e.nodes) {
			if _, _, ok := agreedLeader(e); ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the etcd members did not form a cluster within 60s (see the e*.log files)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *etcdContender) shutdown() {
	for _, n := range e.nodes {
		n.kill()
	}
}

// flexUint reads a uint64 the gateway writes as a JSON string (or a number).
type flexUint uint64

func (f *flexUint) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	*f = flexUint(v)
	return err
}

// etcdStatus is the part of POST /v3/maintenance/status used here.
type etcdStatus struct {
	Header struct {
		MemberID flexUint `json:"member_id"`
	} `json:"header"`
	Leader   flexUint `json:"leader"`
	RaftTerm flexUint `json:"raftTerm"`
}

// call POSTs a JSON body to one of the gateway's /v3 paths.
func (e *etcdContender) call(hc *http.Client, n *node, path string, body any, timeout time.Duration) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	r := doHTTP(hc, timeout, http.MethodPost, "http://"+n.httpAddr+path, b, "application/json")
	if r.err != nil {
		return nil, r.err
	}
	if r.status != http.StatusOK {
		return nil, errors.New(r.String())
	}
	return r.body, nil
}

func (e *etcdContender) status(n *node, timeout time.Duration) (*etcdStatus, error) {
	b, err := e.call(e.hc, n, "/v3/maintenance/status", struct{}{}, timeout)
	if err != nil {
		return nil, err
	}
	var st etcdStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (e *etcdContender) leaderOf(n *node, timeout time.Duration) (*node, uint64, error) {
	st, err := e.status(n, timeout)
	if err != nil {
		return nil, 0, err
	}
	e.mu.Lock()
	l := e.ids[uint64(st.Leader)]
	e.mu.Unlock()
	return l, uint64(st.RaftTerm), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (e *etcdContender) put(hc *http.Client, n *node, key, value string, timeout time.Duration) error {
	b, err := e.call(hc, n, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(value)}, timeout)
	if err != nil {
		return err
	}
	// A put is answered with its response header; anything else is not an acknowledgement.
	var ans struct {
		Header *struct {
			Revision flexUint `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Header == nil || ans.Header.Revision == 0 {
		return fmt.Errorf("unexpected put answer %q", b)
	}
	return nil
}

func (e *etcdContender) readAll(n *node, prefix string) (map[string]string, error) {
	end := []byte(prefix)
	end[len(end)-1]++
	items := map[string]string{}
	from := prefix
	hc := &http.Client{}
	for {
		req := map[string]any{"key": b64(from), "range_end": base64.StdEncoding.EncodeToString(end), "limit": 5000}
		b, err := e.call(hc, n, "/v3/kv/range", req, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("range on e%d: %w", n.id, err)
		}
		var page struct {
			Kvs []struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			} `json:"kvs"`
			More bool `json:"more"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		for _, kv := range page.Kvs {
			k, err1 := base64.StdEncoding.DecodeString(kv.Key)
			v, err2 := base64.StdEncoding.DecodeString(kv.Value)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			items[string(k)] = string(v)
			from = string(k) + "\x00"
		}
		if !page.More || len(page.Kvs) == 0 {
			return items, nil
		}
	}
}

func (e *etcdContender) settings() string {
	return fmt.Sprintf("%s (Debian etcd-server): --heartbeat-interval %d --election-timeout %d (each follower draws its timeout from [%v, %v)), "+
		"--pre-vote=true (off by default in 3.4, on by default in 3.5+), check-quorum on (always in etcd); "+
		"the WAL is fsynced before a write is acknowledged (the default); reached through its v3 JSON gateway "+
		"(POST /v3/kv/put on each member's client URL)",
		e.ver, e.cfg.etcdHeartbeat.Milliseconds(), e.cfg.etcdElection.Milliseconds(), e.cfg.etcdElection, 2*e.cfg.etcdElection)
}

// firstLine runs bin with args and returns the first line of its output ("?" on error).
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// ---- the health of a cluster ----

// agreedLeader reports the leader every member names (each running and answering), and
// the term the leader reports.
func agreedLeader(sys contender) (*node, uint64, bool) {
	ms := sys.members()
	type answer struct {
		leader *node
		term   uint64
		err    error
	}
	answers := make([]answer, len(ms))
	var wg sync.WaitGroup
	for i, n := range ms {
		if !n.up() {
			return nil, 0, false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, t, err := sys.leaderOf(n, time.Second)
			answers[i] = answer{l, t, err}
		}()
	}
	wg.Wait()
	leader := answers[0].leader
	var term uint64
	for i, a := range answers {
		if a.err != nil || a.leader == nil || a.leader != leader {
			return nil, 0, false
		}
		if ms[i] == leader {
			term = a.term
		}
	}
	return leader, term, true
}

// ---- the write stream ----

// putStream sends PUTs of new keys and records every acknowledged one.
type putStream struct {
	sys      contender
	hc       *http.Client
	prefix   string
	every    time.Duration
	timeout  time.Duration
	slots    chan struct{}
	excluded atomic.Pointer[node] // the faulted member, which gets no PUTs
	rr, seq  atomic.Uint64
	inflight sync.WaitGroup

	mu                    sync.Mutex
	acked                 map[string]string
	acks                  []ackTimes // in the order they were recorded
	sent, failed, skipped int
}

type ackTimes struct{ call, ret time.Time }

func newPutStream(sys contender, cfg failoverConfig) *putStream {
	return &putStream{sys: sys, prefix: "fo/", every: cfg.putEvery, timeout: cfg.putTimeout,
		slots: make(chan struct{}, cfg.maxInFlight), acked: map[string]string{},
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.maxInFlight}}}
}

// run sends one PUT every tick until stop is closed, then waits for those in flight.
func (p *putStream) run(stop <-chan struct{}) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			p.inflight.Wait()
			return
		case <-t.C:
		}
		select {
		case p.slots <- struct{}{}:
		default:
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		n := p.pick()
		p.inflight.Add(1)
		go func() {
			defer p.inflight.Done()
			defer func() { <-p.slots }()
			p.one(n, p.timeout)
		}()
	}
}

// pick is the next member round-robin, skipping the excluded one.
func (p *putStream) pick() *node {
	ms := p.sys.members()
	ex := p.excluded.Load()
	for {
		n := ms[int(p.rr.Add(1)%uint64(len(ms)))]
		if n != ex {
			return n
		}
	}
}

// one PUTs a new key through n and reports whether it was acknowledged.
func (p *putStream) one(n *node, timeout time.Duration) bool {
	seq := p.seq.Add(1)
	key := fmt.Sprintf("%s%08d", p.prefix, seq)
	value := fmt.Sprintf("v%d-via-%d", seq, n.id)
	call := time.Now()
	err := p.sys.put(p.hc, n, key, value, timeout)
	ret := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	if err != nil {
		p.failed++
		return false
	}
	p.acked[key] = value
	p.acks = append(p.acks, ackTimes{call, ret})
	return true
}

// mark is a position in the acknowledgements, to look at only those recorded after it.
func (p *putStream) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// firstAfter is the earliest return of an acknowledged PUT sent after at (among those
// recorded since mark), or the zero time.
func (p *putStream) firstAfter(mark int, at time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, a := range p.acks[mark:] {
		if a.call.After(at) && (first.IsZero() || a.ret.Before(first)) {
			first = a.ret
		}
	}
	return first
}

// waitHealthy waits until every member names the same leader and a write through it is
// acknowledged.
func waitHealthy(sys contender, p *putStream, timeout time.Duration) (*node, uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l, t, ok := agreedLeader(sys); ok && p.one(l, 2*time.Second) {
			return l, t, nil
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%s: no leader named by every member with a write acknowledged within %v", sys.name(), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- faults ----

const (
	faultKill  = "kill"
	faultPause = "pause"
)

// failoverFault is one measured fault (faults.jsonl; the durations in ms, -1 when not seen).
type failoverFault struct {
	System      string  `json:"system"`
	Kind        string  `json:"kind"`
	Node        int     `json:"node"`
	Term        uint64  `json:"term"`
	At          float64 `json:"at_s"` // since the run's origin
	RecoveryMs  float64 `json:"recovery_ms"`
	NewLeaderMs float64 `json:"new_leader_ms"`
	NewLeader   int     `json:"new_leader"`
	NewTerm     uint64  `json:"new_term"` // the new leader's, once the fault was measured (0: unknown)
	UndoneMs    float64 `json:"undone_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// faultOrder alternates kills and pauses, then the rest of the larger count.
func faultOrder(kills, pauses int) []string {
	var out []string
	for kills > 0 || pauses > 0 {
		if kills > 0 {
			out = append(out, faultKill)
			kills--
		}
		if pauses > 0 {
			out = append(out, faultPause)
			pauses--
		}
	}
	return out
}

// inject applies one fault to the leader and measures it: the member is restarted or
// resumed once both a write sent after the fault was acknowledged and a survivor named
// another leader, or after the fault limit; the wait for a write goes on until 30 s.
func inject(sys contender, p *putStream, cfg failoverConfig, t0 time.Time, kind string, leader *node, term uint64) (failoverFault, error) {
	f := failoverFault{System: sys.name(), Kind: kind, Node: leader.id, Term: term, RecoveryMs: -1, NewLeaderMs: -1}
	var survivors []*node
	for _, n := range sys.members() {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	p.excluded.Store(leader)
	mark := p.mark()
	var err error
	if kind == faultKill {
		err = leader.signal(syscall.SIGKILL, false)
	} else {
		err = leader.signal(syscall.SIGSTOP, true)
	}
	at := time.Now()
	if err != nil {
		return f, fmt.Errorf("%s of node %d: %w", kind, leader.id, err)
	}
	f.At = at.Sub(t0).Seconds()

	// The survivors' view of the leader, polled until one names another leader.
	var nlMu sync.Mutex
	var nlAt time.Time
	var nlNode *node
	stop := make(chan struct{})
	var pollers sync.WaitGroup
	for _, n := range survivors {
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, _, err := sys.leaderOf(n, 300*time.Millisecond)
				now := time.Now()
				if err == nil && l != nil && l != leader {
					nlMu.Lock()
					if nlAt.IsZero() || now.Before(nlAt) {
						nlAt, nlNode = now, l
					}
					nlMu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	if kind == faultKill {
		leader.waitExited()
	}
	newLeaderSeen := func() bool {
		nlMu.Lock()
		defer nlMu.Unlock()
		return !nlAt.IsZero()
	}

	limit := at.Add(cfg.faultLimit)
	for time.Now().Before(limit) && !(newLeaderSeen() && !p.firstAfter(mark, at).IsZero()) {
		time.Sleep(5 * time.Millisecond)
	}
	// The new leader's own term, asked now: the term a survivor reported with its first
	// naming of the leader can lag (etcd reports the term of its last applied entry).
	nlMu.Lock()
	newLeader := nlNode
	nlMu.Unlock()
	var newTerm uint64
	if newLeader != nil {
		if l, t, err := sys.leaderOf(newLeader, 300*time.Millisecond); err == nil && l == newLeader {
			newTerm = t
		}
	}
	if kind == faultKill {
		err = sys.restart(leader)
	} else {
		err = leader.signal(syscall.SIGCONT, false)
	}
	undone := time.Now()
	f.UndoneMs = ms(undone.Sub(at))
	for time.Since(at) < 30*time.Second && p.firstAfter(mark, at).IsZero() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	pollers.Wait()
	if first := p.firstAfter(mark, at); !first.IsZero() {
		f.RecoveryMs = ms(first.Sub(at))
	}
	if !nlAt.IsZero() {
		f.NewLeaderMs, f.NewLeader, f.NewTerm = ms(nlAt.Sub(at)), nlNode.id, newTerm
	}
	if err != nil {
		return f, fmt.Errorf("undoing the %s of node %d: %w", kind, leader.id, err)
	}
	return f, nil
}

// ---- one system's run ----

type systemResult struct {
	name     string
	settings string
	faults   []failoverFault
	harness  error // the run could not be completed
	checked  bool  // the read-back ran
	acked    int
	missing  int
	wrong    int
	extra    int // keys present that were never acknowledged (PUTs of unknown outcome)
	sent     int
	failed   int
	skipped  int
}

func (r *systemResult) passed() bool {
	return r.harness == nil && r.checked && r.missing == 0 && r.wrong == 0
}

func runFailoverSystem(cfg config, name string, t0 time.Time) (res systemResult) {
	fc := cfg.failover
	res.name = name
	out := filepath.Join(cfg.out, name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		res.harness = err
		return res
	}
	defer func() {
		if err := writeJSONLines(filepath.Join(out, "faults.jsonl"), res.faults); err != nil {
			fmt.Fprintln(os.Stderr, "writing the faults:", err)
		}
	}()
	var sys contender
	switch name {
	case "wire":
		timers := timerFlags{heartbeat: fc.wireHeartbeat, election: fc.wireElection}
		c, err := newCluster(cfg.wire, out, 3, timers, t0)
		if err != nil {
			res.harness = err
			return res
		}
		ver := firstLine(cfg.wire, "--version") + " (" + cfg.wire
		if strings.Contains(cfg.wire, "/debug/") {
			ver += ", a debug build"
		}
		sys = &wireContender{c: c, hc: &http.Client{}, cfg: fc, ver: ver + ")"}
	default:
		e, err := newEtcd(fc, out, t0)
		if err != nil {
			res.harness = err
			return res
		}
		sys = e
	}
	res.settings = sys.settings()
	defer sys.shutdown()
	logf := func(format string, args ...any) { logSince(t0, name+": "+format, args...) }

	if err := sys.start(context.Background()); err != nil {
		res.harness = err
		return res
	}
	for _, n := range sys.members() {
		logf("member %d: client %s, peer %s, log %s", n.id, n.httpAddr, n.raftAddr, n.logPath)
	}
	p := newPutStream(sys, fc)
	stopPuts := make(chan struct{})
	putsDone := make(chan struct{})
	go func() {
		defer close(putsDone)
		p.run(stopPuts)
	}()
	stopStream := func() {
		if stopPuts != nil {
			close(stopPuts)
			<-putsDone
			stopPuts = nil
		}
	}
	defer stopStream()

	// The same settle times for every system (same seed).
	rng := rand.New(rand.NewSource(cfg.seed))
	order := faultOrder(fc.kills, fc.pauses)
	counts := map[string]int{}
	for i := 0; i < len(order); {
		if _, _, err := waitHealthy(sys, p, 60*time.Second); err != nil {
			res.harness = err
			return res
		}
		p.excluded.Store(nil)
		time.Sleep(fc.settle.pick(rng))
		leader, term, ok := agreedLeader(sys)
		if !ok {
			logf("leadership unsettled after the wait; waiting again")
			continue
		}
		kind := order[i]
		i++
		counts[kind]++
		f, err := inject(sys, p, fc, t0, kind, leader, term)
		res.faults = append(res.faults, f)
		logf("%s %d: member %d (leader, term %d): %s; %s; %s after %.0f ms",
			kind, counts[kind], f.Node, f.Term, describeRecovery(f), describeNewLeader(f),
			map[string]string{faultKill: "restarted", faultPause: "resumed"}[kind], f.UndoneMs)
		if err != nil {
			res.harness = err
			return res
		}
	}

	// A healthy cluster, one more second of writes, then the read-back.
	leader, _, err := waitHealthy(sys, p, 60*time.Second)
	if err != nil {
		res.harness = err
		return res
	}
	p.excluded.Store(nil)
	time.Sleep(time.Second)
	stopStream()
	p.mu.Lock()
	res.acked, res.sent, res.failed, res.skipped = len(p.acked), p.sent, p.failed, p.skipped
	acked := p.acked
	p.mu.Unlock()
	got, err := sys.readAll(leader, p.prefix)
	if err != nil {
		res.harness = fmt.Errorf("%s: reading back: %w", name, err)
		return res
	}
	res.checked = true
	for k, v := range acked {
		switch g, ok := got[k]; {
		case !ok:
			res.missing++
			if res.missing <= 10 {
				fmt.Printf("  %s: MISSING %s (acknowledged with %q)\n", name, k, v)
			}
		case g != v:
			res.wrong++
			if res.wrong <= 10 {
				fmt.Printf("  %s: WRONG %s: %q, acknowledged %q\n", name, k, g, v)
			}
		}
	}
	for k := range got {
		if _, ok := acked[k]; !ok {
			res.extra++
		}
	}
	logf("read back %d keys: %d acknowledged, %d missing, %d with another value", len(got), res.acked, res.missing, res.wrong)
	return res
}

func describeRecovery(f failoverFault) string {
	if f.RecoveryMs < 0 {
		return "NO write acknowledged within 30 s"
	}
	s := fmt.Sprintf("first write acknowledged %.0f ms after", f.RecoveryMs)
	if f.RecoveryMs > f.UndoneMs {
		s += " (after the member was back)"
	}
	return s
}

func describeNewLeader(f failoverFault) string {
	if f.NewLeaderMs < 0 {
		return "no survivor named another leader"
	}
	term := "?"
	if f.NewTerm > 0 {
		term = strconv.FormatUint(f.NewTerm, 10)
	}
	return fmt.Sprintf("member %d named leader at %.0f ms (its term: %s)", f.NewLeader, f.NewLeaderMs, term)
}

// ---- the run and its report ----

func runFailover(cfg config) int {
	fc := cfg.failover
	t0 := time.Now()
	fmt.Printf("failover: %s, each a 3-member cluster on 127.0.0.1, one after the other; per system %d leader kills (kill -9, restarted once measured) "+
		"and %d leader pauses (SIGSTOP, SIGCONT once measured, at most %v), alternating, each after %v-%v on a healthy cluster "+
		"(every member names one leader, a write is acknowledged)\n",
		strings.Join(fc.systems, " and "), fc.kills, fc.pauses, fc.faultLimit, fc.settle.min, fc.settle.max)
	fmt.Printf("writes: a PUT of a new key every %v (client timeout %v, at most %d in flight), round-robin over the members other than the faulted one\n",
		fc.putEvery, fc.putTimeout, fc.maxInFlight)

	var results []systemResult
	for _, name := range fc.systems {
		results = append(results, runFailoverSystem(cfg, name, t0))
	}

	fmt.Println()
	fmt.Println("recovery: from the fault to the first acknowledged PUT sent after it; new leader: until a surviving member names another leader (ms)")
	fmt.Printf("%-6s %-6s %5s %7s %7s %7s %7s   %-18s %7s\n", "system", "fault", "count", "min", "median", "p90", "max", "new leader: median", "max")
	type stats struct{ median, max float64 }
	summary := map[string]map[string]stats{}
	for _, r := range results {
		summary[r.name] = map[string]stats{}
		for _, kind := range []string{faultKill, faultPause} {
			var rec, nl []float64
			lost, count := 0, 0
			for _, f := range r.faults {
				if f.Kind != kind {
					continue
				}
				count++
				if f.RecoveryMs < 0 {
					lost++
				} else {
					rec = append(rec, f.RecoveryMs)
				}
				if f.NewLeaderMs >= 0 {
					nl = append(nl, f.NewLeaderMs)
				}
			}
			if count == 0 {
				continue
			}
			slices.Sort(rec)
			slices.Sort(nl)
			note := ""
			if lost > 0 {
				note = fmt.Sprintf("   (%d with no write acknowledged within 30 s)", lost)
			}
			if len(nl) < count {
				note += fmt.Sprintf("   (%d with no other leader named)", count-len(nl))
			}
			fmt.Printf("%-6s %-6s %5d %7s %7s %7s %7s   %18s %7s%s\n", r.name, kind, count,
				fmtMs(pct(rec, 0)), fmtMs(pct(rec, 0.5)), fmtMs(pct(rec, 0.9)), fmtMs(pct(rec, 1)),
				fmtMs(pct(nl, 0.5)), fmtMs(pct(nl, 1)), note)
			summary[r.name][kind] = stats{pct(rec, 0.5), pct(rec, 1)}
		}
	}
	fmt.Println("(median and p90 interpolated between ranks)")
	if w, ok := summary["wire"]; ok {
		if e, ok := summary["etcd"]; ok {
			for _, kind := range []string{faultKill, faultPause} {
				ws, ok1 := w[kind]
				es, ok2 := e[kind]
				if ok1 && ok2 {
					fmt.Printf("ratio etcd/wire %-6s median %.2fx  max %.2fx\n", kind+":", es.median/ws.median, es.max/ws.max)
				}
			}
			fmt.Println("(>1: Wire recovered faster)")
		}
	}
	fmt.Println("settings:")
	for _, r := range results {
		if r.settings != "" {
			fmt.Printf("  %s\n", r.settings)
		}
	}
	fmt.Printf("machine: nproc %d, %s\n", runtime.NumCPU(), cpuModel())
	fmt.Printf("output: %s (node logs, faults.jsonl per system)\n", cfg.out)

	passed, failed, harness := 0, 0, false
	for _, r := range results {
		fmt.Printf("check %s: %d PUTs sent, %d acknowledged, %d failed or timed out, %d ticks skipped (no slot free); ",
			r.name, r.sent, r.acked, r.failed, r.skipped)
		switch {
		case r.harness != nil:
			harness = true
			fmt.Printf("NOT COMPLETED: %v\n", r.harness)
		case r.missing+r.wrong > 0:
			fmt.Printf("read back: %d MISSING, %d with ANOTHER VALUE (of %d acknowledged)\n", r.missing, r.wrong, r.acked)
		default:
			fmt.Printf("read back: all %d acknowledged keys with their value (%d unacknowledged PUTs took effect too)\n", r.acked, r.extra)
		}
		if r.passed() {
			passed++
		} else {
			failed++
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	switch {
	case failed > 0 && !harness:
		return 1
	case harness:
		return 2
	}
	return 0
}

// pct is the p-quantile of sorted values, interpolated between ranks; NaN if empty.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	r := p * float64(len(sorted)-1)
	lo := int(math.Floor(r))
	hi := int(math.Ceil(r))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(r-float64(lo))
}

func fmtMs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// cpuModel is the first "model name" of /proc/cpuinfo, or GOARCH.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if k, v, ok := strings.Cut(string(line), ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
