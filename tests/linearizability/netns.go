package main

// netns.go: -netns runs each node in a network namespace of its own, so that the network
// between nodes can be cut while the harness (the clients) still reaches every node.
//
// The layout of one run (k is a free /24, chosen from the harness's pid):
//
//	root namespace:  bridge wlc<pid>, 10.213.<k>.1/24; the root ends of the veths on it
//	wlc<pid>-n<i>:   lo, and eth0 (the other end of veth wlc<pid>v<i>) with 10.213.<k>.<10+i>/24
//
// Every node listens on its own address (HTTP on port 8081, Raft on 9081) and is started
// with `ip netns exec`. The harness talks to the nodes from the root namespace through the
// bridge. A partition of node i adds blackhole routes inside the namespaces: in node i's
// towards every other node, and in every other node's towards node i, so that no packet
// passes between node i and the other nodes in either direction, while 10.213.<k>.1 (the
// clients) still reaches all of them. Healing deletes those routes. Everything is deleted
// again when the harness ends (normally, on an error, a panic or SIGINT/SIGTERM).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// netLab is one run's namespaces, veths and bridge.
type netLab struct {
	prefix string // wlc<pid>: the bridge's name, and the prefix of the other names
	subnet string // 10.213.<k>
	nodes  int

	mu      sync.Mutex
	created []func() // undo steps, in creation order
	routes  []blackhole
	gone    bool
}

// blackhole is one route added by a partition: in namespace ns, towards ip.
type blackhole struct{ ns, ip string }

// labs holds the live netLabs, so that cleanup can delete them on any exit path.
var labs struct {
	mu  sync.Mutex
	all []*netLab
}

// destroyLabs deletes every network namespace, veth and bridge this process made.
func destroyLabs() {
	labs.mu.Lock()
	all := labs.all
	labs.all = nil
	labs.mu.Unlock()
	for _, l := range all {
		l.destroy()
	}
}

// ipCmd runs `ip args...`, the error carrying ip's output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetLab creates the namespaces, veths and bridge for n nodes; on an error whatever was
// made is deleted again.
func newNetLab(n int) (*netLab, error) {
	sweepStale()
	pid := os.Getpid()
	l := &netLab{prefix: fmt.Sprintf("wlc%d", pid), nodes: n}
	k, err := freeSubnet(pid)
	if err != nil {
		return nil, err
	}
	l.subnet = fmt.Sprintf("10.213.%d", k)
	labs.mu.Lock()
	labs.all = append(labs.all, l)
	labs.mu.Unlock()

	step := func(undo []string, args ...string) error {
		if err := ipCmd(args...); err != nil {
			return err
		}
		if undo != nil {
			l.mu.Lock()
			l.created = append(l.created, func() { _ = ipCmd(undo...) })
			l.mu.Unlock()
		}
		return nil
	}
	br := l.prefix
	steps := [][]string{
		{"link", "add", "name", br, "type", "bridge"},
		{"addr", "add", l.subnet + ".1/24", "dev", br},
		{"link", "set", br, "up"},
	}
	undos := [][]string{{"link", "del", br}, nil, nil}
	for i := 1; i <= n; i++ {
		ns, veth := l.ns(i), fmt.Sprintf("%sv%d", l.prefix, i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"link", "set", veth, "master", br},
			[]string{"link", "set", veth, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "addr", "add", l.ip(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
		undos = append(undos, []string{"netns", "del", ns}, []string{"link", "del", veth}, nil, nil, nil, nil, nil)
	}
	for i, s := range steps {
		if err := step(undos[i], s...); err != nil {
			l.destroy()
			return nil, fmt.Errorf("-netns: setting up the network namespaces (is this root on Linux, with iproute2?): %w", err)
		}
	}
	return l, nil
}

// freeSubnet picks k such that no address or route of the root namespace is in
// 10.213.<k>.0/24, starting from one derived from the pid so that concurrent runs differ.
func freeSubnet(pid int) (int, error) {
	var seen strings.Builder
	for _, args := range [][]string{{"-o", "-4", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			return 0, fmt.Errorf("-netns: ip %s: %w", strings.Join(args, " "), err)
		}
		seen.Write(out)
	}
	s := seen.String()
	for d := 0; d < 250; d++ {
		k := 1 + (pid+d)%250
		if !strings.Contains(s, fmt.Sprintf("10.213.%d.", k)) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("-netns: no free subnet in 10.213.0.0/16")
}

// ns is node i's namespace.
func (l *netLab) ns(i int) string { return fmt.Sprintf("%s-n%d", l.prefix, i) }

// ip is node i's address.
func (l *netLab) ip(i int) string { return fmt.Sprintf("%s.%d", l.subnet, 10+i) }

// partition cuts node i off from every other node (not from the clients).
func (l *netLab) partition(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for j := 1; j <= l.nodes; j++ {
		if j == i {
			continue
		}
		for _, r := range []blackhole{{l.ns(i), l.ip(j)}, {l.ns(j), l.ip(i)}} {
			if err := ipCmd("-n", r.ns, "route", "add", "blackhole", r.ip+"/32"); err != nil {
				return err
			}
			l.routes = append(l.routes, r)
		}
	}
	return nil
}

// heal deletes every route added by partition.
func (l *netLab) heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first error
	for _, r := range l.routes {
		if err := ipCmd("-n", r.ns, "route", "del", "blackhole", r.ip+"/32"); err != nil && first == nil {
			first = err
		}
	}
	l.routes = nil
	return first
}

// destroy deletes the namespaces, veths and bridge (once). Processes still inside a
// namespace should be killed first: the harness kills the nodes before it calls this.
func (l *netLab) destroy() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return
	}
	l.gone = true
	for i := len(l.created) - 1; i >= 0; i-- {
		l.created[i]()
	}
	l.created, l.routes = nil, nil
}

// exec is the command line that runs bin with args in node i's namespace.
func (l *netLab) exec(i int, bin string, args []string) (string, []string) {
	return "ip", append([]string{"netns", "exec", l.ns(i), bin}, args...)
}

// Names of earlier runs' namespaces and links: the pid is the harness that made them.
var (
	staleNetns = regexp.MustCompile(`^wlc([0-9]+)-n[0-9]+$`)
	staleLink  = regexp.MustCompile(`^wlc([0-9]+)(v[0-9]+)?$`)
)

// sweepStale deletes the namespaces, veths and bridges of earlier runs whose harness is no
// longer running: one killed outright, or crashed by a panic outside the main goroutine,
// had no chance to delete them itself.
func sweepStale() {
	dead := func(m []string) bool {
		if m == nil {
			return false
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() {
			return false
		}
		err = syscall.Kill(pid, 0)
		return errors.Is(err, syscall.ESRCH)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && dead(staleNetns.FindStringSubmatch(f[0])) {
				_ = ipCmd("netns", "del", f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: wlc123v1@if2: <BROADCAST,...": the name is the second field, up to '@' or ':'.
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if dead(staleLink.FindStringSubmatch(name)) {
				_ = ipCmd("link", "del", name)
			}
		}
	}
}
