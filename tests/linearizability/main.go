// Command linearizability runs a Wire cluster on 127.0.0.1, drives it with concurrent
// clients while a nemesis kills, restarts and pauses nodes, and checks the recorded
// history of the key-value API for linearizability with porcupine. With -mode durability
// it checks instead that acknowledged writes survive crashes and that replicas agree.
// With -mode failover it is a benchmark: Wire and etcd, one after the other, under the
// same leader kills and pauses, timed from each fault to the first write acknowledged
// after it (failover.go; bench/failover/run.sh runs it).
//
//	go -C tests/linearizability run . -duration 30s
//	go -C tests/linearizability run . -planted local    # self-test: must report NOT linearizable
//	go -C tests/linearizability run . -mode durability
//	go -C tests/linearizability run . -mode failover -kills 10 -pauses 10
//
// Exit status: 0 when the check passes, 1 when it fails, 2 when it cannot decide (checker
// timeout) or the harness itself fails (say, the cluster never forms).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// config is the command line.
type config struct {
	wire         string
	nodes        int
	duration     time.Duration
	clients      int
	keys         int
	seed         int64
	out          string
	nemeses      []string
	every        interval
	planted      string
	mode         string
	fastTimers   bool
	timeout      time.Duration
	checkTimeout time.Duration
	failover     failoverConfig
	netns        bool
	lab          *netLab // -netns: the namespaces, made by run
}

func parseFlags() (config, error) {
	var cfg config
	var nemeses, every string
	flag.StringVar(&cfg.wire, "wire", "", "path of the wire binary (default: target/debug/wire under the repository root)")
	flag.IntVar(&cfg.nodes, "nodes", 3, "cluster size: 3 or 5")
	flag.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long the clients run (durability mode: how long the writes are spread over)")
	flag.IntVar(&cfg.clients, "clients", 10, "concurrent clients")
	flag.IntVar(&cfg.keys, "keys", 5, "keys the clients share")
	flag.Int64Var(&cfg.seed, "seed", 0, "random seed (default: time-based; printed so a run's choices can be repeated)")
	flag.StringVar(&cfg.out, "out", "", "output directory for logs, data dirs, history and visualization (default: a new temporary directory)")
	flag.StringVar(&nemeses, "nemesis", "kill,fastrestart,pause,follower", "comma list of faults: kill, fastrestart, pause, follower, partition (needs -netns), or none; -netns adds partition to the default")
	flag.StringVar(&every, "nemesis-interval", "3s-6s", "time between faults once the cluster has recovered: a range min-max or one duration")
	flag.StringVar(&cfg.planted, "planted", "", "plant a known bug to prove the checker catches it: local (reads use consistency=local)")
	flag.StringVar(&cfg.mode, "mode", "lin", "lin (linearizability) or durability")
	flag.BoolVar(&cfg.fastTimers, "fast-timers", false, "run the nodes with short Raft timers (heartbeat 50 ms, election 300-600 ms)")
	flag.DurationVar(&cfg.timeout, "op-timeout", 2*time.Second, "timeout of each client request")
	flag.DurationVar(&cfg.checkTimeout, "check-timeout", 60*time.Second, "time limit of the linearizability check")
	flag.BoolVar(&cfg.netns, "netns", false, "run each node in a network namespace of its own (root on Linux, iproute2), which the partition nemesis needs")
	failoverFlags(&cfg.failover)
	flag.Parse()

	nemesisSet := false
	flag.Visit(func(f *flag.Flag) { nemesisSet = nemesisSet || f.Name == "nemesis" })
	if cfg.netns && !nemesisSet {
		nemeses += "," + nemPartition
	}
	var err error
	if cfg.nemeses, err = parseNemeses(nemeses, cfg.netns); err != nil {
		return cfg, err
	}
	if cfg.every, err = parseInterval(every); err != nil {
		return cfg, fmt.Errorf("-nemesis-interval: %w", err)
	}
	switch {
	case cfg.nodes != 3 && cfg.nodes != 5:
		return cfg, errors.New("-nodes must be 3 or 5")
	case cfg.clients < 1 || cfg.keys < 1:
		return cfg, errors.New("-clients and -keys must be positive")
	case cfg.planted != "" && cfg.planted != "local":
		return cfg, fmt.Errorf("-planted: unknown bug %q (known: local)", cfg.planted)
	case cfg.mode != "lin" && cfg.mode != "durability" && cfg.mode != "failover":
		return cfg, fmt.Errorf("-mode: %q is not lin, durability or failover", cfg.mode)
	case cfg.netns && cfg.mode == "failover":
		return cfg, errors.New("-netns: not supported with -mode failover")
	}
	if cfg.mode == "failover" {
		if err := cfg.failover.check(); err != nil {
			return cfg, err
		}
	}
	if cfg.seed == 0 {
		cfg.seed = time.Now().UnixNano()
	}
	if cfg.wire == "" {
		cfg.wire = filepath.Join(repoRoot(), "target", "debug", "wire")
	}
	if cfg.wire, err = filepath.Abs(cfg.wire); err != nil {
		return cfg, err
	}
	if _, err := os.Stat(cfg.wire); err != nil {
		return cfg, fmt.Errorf("the wire binary: %w", err)
	}
	if cfg.out == "" {
		if cfg.out, err = os.MkdirTemp("", "wire-"+cfg.mode+"-"); err != nil {
			return cfg, err
		}
	} else if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return cfg, err
	}
	cfg.out, err = filepath.Abs(cfg.out)
	return cfg, err
}

// repoRoot is the nearest directory at or above the working directory that holds this
// tool (tests/linearizability) and a Cargo.toml; the working directory if there is none.
func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if fileExists(filepath.Join(d, "Cargo.toml")) && fileExists(filepath.Join(d, "tests", "linearizability")) {
			return d
		}
		if filepath.Dir(d) == d {
			return wd
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func main() {
	os.Exit(run())
}

// run is main with an exit status, so that deferred cleanup runs before the exit.
func run() int {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}

	// Every node process dies with the harness: on return and on panic (deferred), on
	// SIGINT/SIGTERM (here), and if the harness is killed outright (Pdeathsig). The
	// network namespaces (-netns) are deleted after the nodes are killed, on the same
	// paths except the last.
	defer destroyLabs()
	defer procs.killAll()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\n%v: killing the nodes\n", s)
		procs.killAll()
		destroyLabs()
		os.Exit(130)
	}()
	if cfg.netns {
		if cfg.lab, err = newNetLab(cfg.nodes); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 2
		}
	}

	fmt.Printf("seed: %d (pass -seed %d to repeat this run's choices)\n", cfg.seed, cfg.seed)
	fmt.Printf("output: %s\n", cfg.out)
	fmt.Printf("binary: %s\n", cfg.wire)
	if cfg.lab != nil {
		fmt.Printf("network: each node in namespace %s-n<i>, address %s.<10+i>; bridge %s (%s.1)\n",
			cfg.lab.prefix, cfg.lab.subnet, cfg.lab.prefix, cfg.lab.subnet)
	}

	switch cfg.mode {
	case "durability":
		return runDurability(cfg)
	case "failover":
		return runFailover(cfg)
	}
	return runLinearizability(cfg)
}

// runLinearizability is the -mode lin run.
func runLinearizability(cfg config) int {
	rng := rand.New(rand.NewSource(cfg.seed))
	t0 := time.Now()
	c, err := clusterFor(cfg, t0)
	if err != nil {
		return harnessFailure(err)
	}
	defer c.shutdown()
	ctx := context.Background()
	if err := c.start(ctx); err != nil {
		return harnessFailure(err)
	}
	c.logf("cluster of %d nodes up", cfg.nodes)
	for _, n := range c.nodes {
		fmt.Printf("  node %d: http %s, raft %s, log %s\n", n.id, n.httpAddr, n.raftAddr, n.logPath)
	}

	consistency := "linearizable"
	if cfg.planted == "local" {
		consistency = "local"
		fmt.Println("planted bug: reads use consistency=local; the check must fail")
	}
	w := &workload{c: c, consistency: consistency, timeout: cfg.timeout, target: &readTarget{}, t0: t0}
	for i := 0; i < cfg.keys; i++ {
		w.keys = append(w.keys, fmt.Sprintf("lin/k%d", i))
	}

	// Clients.
	stop := make(chan struct{})
	var clients sync.WaitGroup
	workStart := w.now()
	for i := 0; i < cfg.clients; i++ {
		cl := newClient(w, i, rng.Int63())
		clients.Add(1)
		go func() {
			defer clients.Done()
			cl.run(stop)
		}()
	}

	// Nemesis.
	nm := &nemesis{c: c, kinds: cfg.nemeses, every: cfg.every, rng: rand.New(rand.NewSource(rng.Int63())),
		target: w.target, t0: t0, readLead: time.Second}
	nctx, stopNemesis := context.WithCancel(ctx)
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		if len(cfg.nemeses) > 0 {
			nm.run(nctx)
		}
	}()
	c.logf("%d clients on %d keys for %v; nemesis: %v every %v-%v", cfg.clients, cfg.keys, cfg.duration, cfg.nemeses, cfg.every.min, cfg.every.max)

	time.Sleep(cfg.duration)
	stopNemesis()
	<-nemDone
	c.logf("nemesis stopped; waiting for the cluster to heal (clients still running)")
	healed := true
	if id, err := c.waitHealthy(ctx, 60*time.Second); err != nil {
		healed = false
		c.logf("WARNING: %v", err)
	} else {
		c.logf("healed: every node follows leader %d", id)
	}
	// A last second of work on the healed cluster, so that the last fault's recovery
	// shows in the history too.
	time.Sleep(time.Second)
	close(stop)
	clients.Wait()
	workEnd := w.now()
	c.logf("clients stopped")
	c.shutdown()

	if err := writeJSONLines(filepath.Join(cfg.out, "history.jsonl"), w.attempts); err != nil {
		fmt.Fprintln(os.Stderr, "writing the history:", err)
	}
	faults := nm.list()
	if err := writeJSONLines(filepath.Join(cfg.out, "faults.jsonl"), faults); err != nil {
		fmt.Fprintln(os.Stderr, "writing the faults:", err)
	}

	history := w.history()
	c.logf("checking %d operations (timeout %v)", len(history), cfg.checkTimeout)
	res := checkHistory(history, cfg.checkTimeout)

	fmt.Println()
	printCounts(w.counts())
	printFaults(faults, cfg.nemeses)
	printRecovery(faults, w.writeAcks(), workStart, workEnd)
	if !healed {
		fmt.Println("WARNING: the cluster did not heal within 60s after the nemesis stopped")
	}
	fmt.Printf("check: %d operations checked, %d unknown-outcome operations never observed left out; %s\n",
		res.checkedOps, res.pruned, res.checkElapsed.Round(time.Millisecond))
	if len(res.fullKeys) > 0 {
		fmt.Printf("  keys checked again with every operation: %v\n", res.fullKeys)
	}

	switch res.result {
	case porcupine.Ok:
		fmt.Println("linearizable: yes")
		fmt.Println("1 passed, 0 failed")
		return 0
	case porcupine.Illegal:
		fmt.Printf("  keys not linearizable: %v\n", res.failedKeys)
		annotate(&res.info, faults)
		viz := filepath.Join(cfg.out, "visualization.html")
		if err := porcupine.VisualizePath(kvModel, res.info, viz); err != nil {
			fmt.Fprintln(os.Stderr, "writing the visualization:", err)
		} else {
			fmt.Printf("  visualization: %s\n", viz)
		}
		fmt.Println("linearizable: NO")
		fmt.Println("0 passed, 1 failed")
		return 1
	default:
		fmt.Printf("  keys whose check timed out: %v\n", res.unknownKeys)
		fmt.Printf("linearizable: unknown (the checker timed out after %v)\n", cfg.checkTimeout)
		fmt.Println("0 passed, 1 failed")
		return 2
	}
}

// harnessFailure reports a failure of the harness itself (not a verdict on Wire).
func harnessFailure(err error) int {
	fmt.Println("error:", err)
	fmt.Println("0 passed, 1 failed")
	return 2
}

// annotate marks the faults on the visualization's timeline.
func annotate(info *porcupine.LinearizationInfo, faults []fault) {
	var as []porcupine.Annotation
	for _, f := range faults {
		role := "follower"
		if f.Leader {
			role = "leader"
		}
		as = append(as, porcupine.Annotation{Tag: "nemesis", Start: f.At, End: f.Undone,
			Description: fmt.Sprintf("%s n%d", f.Kind, f.Node),
			Details:     fmt.Sprintf("%s of node %d (%s)", f.Kind, f.Node, role)})
	}
	info.AddAnnotations(as)
}

func printCounts(counts map[opKind]*opCounts) {
	fmt.Println("operations (ok / failed / unknown):")
	for _, k := range []opKind{opRead, opWrite, opCAS} {
		c := counts[k]
		extra := ""
		if k == opCAS {
			extra = fmt.Sprintf("   (ok: %d succeeded, %d compare failed)", c.ok-c.casFalse, c.casFalse)
		}
		fmt.Printf("  %-6s %6d / %5d / %4d%s\n", k, c.ok, c.failed, c.unknown, extra)
	}
	fmt.Println("  (a failed read or write had no effect and is left out of the history; an unknown write or CAS stays in it, open-ended)")
}

func printFaults(faults []fault, kinds []string) {
	byKind := map[string]int{}
	for _, f := range faults {
		byKind[f.Kind]++
	}
	fmt.Printf("faults: %d\n", len(faults))
	for _, k := range kinds {
		fmt.Printf("  %-12s %d\n", k, byKind[k])
	}
}

// printRecovery prints, for each fault of a leader, the time from the fault to the first
// write or CAS both sent and acknowledged after it (an answer already on its way when the
// leader died does not count), and the longest stretch without an acknowledged write.
func printRecovery(faults []fault, acks []writeAck, workStart, workEnd int64) {
	fmt.Println("leader faults: time from the fault to the first write or CAS sent after it and answered 200:")
	var rec []time.Duration
	for _, f := range faults {
		if !f.Leader || f.Kind == nemFollower {
			continue
		}
		i := sort.Search(len(acks), func(i int) bool { return acks[i].ret > f.At })
		for i < len(acks) && acks[i].call <= f.At {
			i++
		}
		if i == len(acks) {
			fmt.Printf("  %7.2fs %-12s node %d: no write acknowledged afterwards\n", float64(f.At)/1e9, f.Kind, f.Node)
			continue
		}
		d := time.Duration(acks[i].ret - f.At)
		rec = append(rec, d)
		note := ""
		if f.Kind == nemFastRestart {
			note = fmt.Sprintf("  (%d reads answered by the restarted node)", f.Reads)
		}
		fmt.Printf("  %7.2fs %-12s node %d: %v%s\n", float64(f.At)/1e9, f.Kind, f.Node, d.Round(time.Millisecond), note)
	}
	if len(rec) == 0 {
		fmt.Println("  none measured")
	} else {
		slices.Sort(rec)
		fmt.Printf("  n=%d  min %v  median %v  max %v\n", len(rec),
			rec[0].Round(time.Millisecond), rec[len(rec)/2].Round(time.Millisecond), rec[len(rec)-1].Round(time.Millisecond))
	}
	points := []int64{workStart}
	for _, a := range acks {
		points = append(points, a.ret)
	}
	points = append(points, workEnd)
	var gap, at int64
	for i := 1; i < len(points); i++ {
		if d := points[i] - points[i-1]; d > gap {
			gap, at = d, points[i-1]
		}
	}
	fmt.Printf("longest stretch without an acknowledged write: %v (from %.2fs)\n",
		time.Duration(gap).Round(time.Millisecond), float64(at)/1e9)
}

// writeJSONLines writes one JSON object per line.
func writeJSONLines[T any](path string, items []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
