package main

// cluster.go: the Wire node processes under test. Starting, killing, pausing and
// restarting them; asking a node for its /status; finding the leader; waiting for the
// cluster to agree on one. Every process started here is registered so that the harness
// can kill all of them when it ends, whatever the reason.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// node is one Wire node: its fixed identity and addresses, and its current process
// (nil while it is down).
type node struct {
	id       int
	httpAddr string
	raftAddr string
	dataDir  string
	logPath  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has been reaped
	paused bool
}

// nodeStatus is the part of GET /status the harness uses.
type nodeStatus struct {
	NodeID int    `json:"node_id"`
	Role   string `json:"role"`
	Leader *struct {
		ID       int    `json:"id"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	Term           uint64 `json:"term"`
	LastLogIndex   uint64 `json:"last_log_index"`
	CommittedIndex uint64 `json:"committed_index"`
	AppliedIndex   uint64 `json:"applied_index"`
	Members        []struct {
		ID    int  `json:"id"`
		Voter bool `json:"voter"`
	} `json:"members"`
}

// leaderID is the leader this node believes in, 0 if none.
func (s *nodeStatus) leaderID() int {
	if s.Leader == nil {
		return 0
	}
	return s.Leader.ID
}

// timerFlags are the Raft timer flags: the binary's defaults unless -fast-timers, or
// explicit values (heartbeat and election timeout range, all set) when heartbeat > 0.
type timerFlags struct {
	fast      bool
	heartbeat time.Duration
	election  interval
}

func (t timerFlags) args() []string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	switch {
	case t.heartbeat > 0:
		return []string{"--heartbeat-ms", ms(t.heartbeat),
			"--election-timeout-min-ms", ms(t.election.min), "--election-timeout-max-ms", ms(t.election.max)}
	case t.fast:
		return []string{"--heartbeat-ms", "50", "--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"}
	default:
		return nil
	}
}

// cluster is the set of nodes of one run.
type cluster struct {
	bin    string
	outDir string
	timers timerFlags
	nodes  []*node
	t0     time.Time // the run's time origin (for log lines)
	http   *http.Client
	lab    *netLab // -netns: each node in its own network namespace (nil: all on 127.0.0.1)
}

// newCluster picks free ports and directories for n nodes; nothing is started yet.
// clusterFor is the cluster the command line asks for (size, timers, and network
// namespaces with -netns), not started yet.
func clusterFor(cfg config, t0 time.Time) (*cluster, error) {
	c, err := newCluster(cfg.wire, cfg.out, cfg.nodes, timerFlags{fast: cfg.fastTimers}, t0)
	if err != nil {
		return nil, err
	}
	if cfg.lab != nil {
		c.inNamespaces(cfg.lab)
	}
	return c, nil
}

func newCluster(bin, outDir string, n int, timers timerFlags, t0 time.Time) (*cluster, error) {
	c := &cluster{bin: bin, outDir: outDir, timers: timers, t0: t0,
		http: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	for i := 1; i <= n; i++ {
		hp, err := freePort()
		if err != nil {
			return nil, err
		}
		rp, err := freePort()
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{
			id:       i,
			httpAddr: fmt.Sprintf("127.0.0.1:%d", hp),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", rp),
			dataDir:  filepath.Join(outDir, fmt.Sprintf("n%d-data", i)),
			logPath:  filepath.Join(outDir, fmt.Sprintf("n%d.log", i)),
		})
	}
	return c, nil
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// inNamespaces moves the (not yet started) nodes into lab's namespaces: each listens on
// its namespace's address, on fixed ports.
func (c *cluster) inNamespaces(lab *netLab) {
	c.lab = lab
	for _, n := range c.nodes {
		n.httpAddr = lab.ip(n.id) + ":8081"
		n.raftAddr = lab.ip(n.id) + ":9081"
	}
}

func (c *cluster) node(id int) *node { return c.nodes[id-1] }

// elapsed is the time since the run's origin, for log lines.
func (c *cluster) elapsed() string { return elapsedSince(c.t0) }

func elapsedSince(t0 time.Time) string {
	return fmt.Sprintf("[%7.2fs]", time.Since(t0).Seconds())
}

// logf prints a line of the run's log, stamped with the time since the origin and the UTC
// wall time (to line it up with the node logs).
func (c *cluster) logf(format string, args ...any) { logSince(c.t0, format, args...) }

func logSince(t0 time.Time, format string, args ...any) {
	fmt.Printf("%s %s %s\n", elapsedSince(t0), time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// startProcess starts the node's process. extra holds --bootstrap or --join on the
// first start; a restart passes nothing (the data dir already holds the membership).
func (c *cluster) startProcess(n *node, extra ...string) error {
	args := []string{"node",
		"--node-id", strconv.Itoa(n.id),
		"--http-addr", n.httpAddr,
		"--raft-addr", n.raftAddr,
		"--data-dir", n.dataDir,
	}
	args = append(args, c.timers.args()...)
	args = append(args, extra...)
	bin := c.bin
	if c.lab != nil {
		bin, args = c.lab.exec(n.id, bin, args)
	}
	return spawn(n, c.t0, fmt.Sprintf("node %d %v", n.id, extra), bin, args, []string{"RUST_LOG=info"})
}

// spawn starts n's process, bin with args (and the harness's environment plus env), its
// output appended to n.logPath after a banner line; the process is registered for cleanup
// and reaped in the background.
func spawn(n *node, t0 time.Time, what, bin string, args, env []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %d already running", n.id)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== harness %s (%s): starting %s\n", elapsedSince(t0),
		time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), what)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", what, err)
	}
	procs.add(cmd.Process)
	exited := make(chan struct{})
	n.cmd, n.exited, n.paused = cmd, exited, false
	go func() {
		_ = cmd.Wait()
		logf.Close()
		procs.remove(cmd.Process)
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(exited)
	}()
	return nil
}

// kill sends SIGKILL to the node's process (stopped or not) and waits until it is gone.
func (c *cluster) kill(n *node) { n.kill() }

func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// restart starts a node that is down again, with its data dir.
func (c *cluster) restart(n *node) error { return c.startProcess(n) }

// pause and resume send SIGSTOP and SIGCONT.
func (c *cluster) pause(n *node) error  { return n.signal(syscall.SIGSTOP, true) }
func (c *cluster) resume(n *node) error { return n.signal(syscall.SIGCONT, false) }

// signal sends sig to the node's process and records whether it is now stopped.
func (n *node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("node %d is not running", n.id)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return err
	}
	n.paused = paused
	return nil
}

// waitExited waits until the node's current process, if any, has been reaped.
func (n *node) waitExited() {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited != nil {
		<-exited
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// up reports whether the node has a running (not stopped) process.
func (n *node) up() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.paused
}

// shutdown kills every node.
func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		c.kill(n)
	}
}

// status asks one node for GET /status.
func (c *cluster) status(n *node, timeout time.Duration) (*nodeStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node %d /status: HTTP %d", n.id, resp.StatusCode)
	}
	var s nodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// statuses asks every running node for its status at once; missing answers are nil.
func (c *cluster) statuses(timeout time.Duration) []*nodeStatus {
	out := make([]*nodeStatus, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		if !n.up() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, err := c.status(n, timeout); err == nil {
				out[i] = s
			}
		}()
	}
	wg.Wait()
	return out
}

// findLeader returns the node that says it is the leader with the highest term among
// the running nodes, or nil if none does.
func (c *cluster) findLeader() (*node, *nodeStatus) {
	var best *nodeStatus
	for _, s := range c.statuses(time.Second) {
		if s != nil && s.Role == "leader" && (best == nil || s.Term > best.Term) {
			best = s
		}
	}
	if best == nil {
		return nil, nil
	}
	return c.node(best.NodeID), best
}

// healthy reports whether every node answers /status, exactly one says it is the leader,
// and every node names that leader. It returns the leader's id.
func (c *cluster) healthy() (int, bool) {
	sts := c.statuses(time.Second)
	leader, leaders := 0, 0
	for _, s := range sts {
		if s == nil {
			return 0, false
		}
		if s.Role == "leader" {
			leader = s.NodeID
			leaders++
		}
	}
	if leaders != 1 {
		return 0, false
	}
	for _, s := range sts {
		if s.leaderID() != leader {
			return 0, false
		}
	}
	return leader, true
}

// waitHealthy polls healthy until it holds or the timeout passes.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		if id, ok := c.healthy(); ok {
			return id, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the cluster did not agree on a leader within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitServing polls /health on one node until it answers 200 or the timeout passes.
func (c *cluster) waitServing(n *node, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/health", nil)
		resp, err := c.http.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// start brings the cluster up: node 1 bootstraps, the others join through it, and the
// call returns once every node is a voting member and all agree on the leader.
func (c *cluster) start(ctx context.Context) error {
	if err := c.startProcess(c.nodes[0], "--bootstrap"); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, err := c.status(c.nodes[0], time.Second); err == nil && s.Role == "leader" {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("node 1 did not become leader of its bootstrapped cluster within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.nodes[1:] {
		if err := c.startProcess(n, "--join", c.nodes[0].httpAddr); err != nil {
			return err
		}
	}
	for {
		if _, ok := c.healthy(); ok {
			if s, err := c.status(c.nodes[0], time.Second); err == nil && voters(s) == len(c.nodes) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %d nodes did not form a cluster within 60s (see the node logs)", len(c.nodes))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func voters(s *nodeStatus) int {
	v := 0
	for _, m := range s.Members {
		if m.Voter {
			v++
		}
	}
	return v
}

// procRegistry holds every node process still running, so that cleanup can kill them
// all on any exit path (normal end, error, panic, SIGINT/SIGTERM).
type procRegistry struct {
	mu    sync.Mutex
	procs map[*os.Process]struct{}
}

var procs = &procRegistry{procs: map[*os.Process]struct{}{}}

func (r *procRegistry) add(p *os.Process) {
	r.mu.Lock()
	r.procs[p] = struct{}{}
	r.mu.Unlock()
}

func (r *procRegistry) remove(p *os.Process) {
	r.mu.Lock()
	delete(r.procs, p)
	r.mu.Unlock()
}

// killAll sends SIGKILL to every registered process.
func (r *procRegistry) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.procs {
		_ = p.Signal(syscall.SIGKILL)
	}
}
