// Wire beside etcd 3.6 driven through its native gRPC client, in one run: a 3-node Wire
// cluster (HTTP PUT /kv/{key}) and a 3-member etcd 3.6 cluster (clientv3 Put), both on
// 127.0.0.1 and both acknowledging a write only once it is fsynced on a majority. The same
// number of concurrent clients put 100-byte values for the same time in alternating
// rounds. Prints ops/s, p50/p99 latency, the servers' CPU per write (from /proc) and the
// ratios. Used by bench/kv/run.sh.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	wireBin  = flag.String("wire", "target/release/wire", "the wire binary")
	etcdBin  = flag.String("etcd", "", "the etcd 3.6 binary")
	clients  = flag.Int("clients", 64, "concurrent clients")
	secs     = flag.Int("secs", 10, "seconds per round")
	rounds   = flag.Int("rounds", 2, "rounds per system, alternating")
	valueLen = flag.Int("value", 100, "value bytes")
	dir      = flag.String("dir", "", "where data and logs go (a temp dir by default)")
)

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type cluster struct {
	procs []*exec.Cmd
	urls  []string // client endpoints
}

func (c *cluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Kill()
		_, _ = p.Process.Wait()
	}
}

// cpu is the servers' user+system CPU time so far.
func (c *cluster) cpu() time.Duration {
	var ticks int64
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100
}

func start(name string, args []string, log string) *exec.Cmd {
	out, err := os.Create(log)
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		panic(fmt.Sprintf("starting %s: %v", name, err))
	}
	return cmd
}

func waitHTTP(url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	panic("timed out waiting for " + url)
}

func startWire(root string) *cluster {
	c := &cluster{}
	var first string
	for i := 1; i <= 3; i++ {
		http := fmt.Sprintf("127.0.0.1:%d", freePort())
		args := []string{"node", "--node-id", strconv.Itoa(i), "--http-addr", http,
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", freePort()),
			"--data-dir", filepath.Join(root, fmt.Sprintf("wire%d", i)), "--worker-threads", "1",
			"--log-level", "warn"}
		if i == 1 {
			args = append(args, "--bootstrap")
			first = http
		} else {
			args = append(args, "--join", first)
		}
		c.procs = append(c.procs, start(*wireBin, args, filepath.Join(root, fmt.Sprintf("wire%d.log", i))))
		waitHTTP("http://" + http + "/ready")
		c.urls = append(c.urls, "http://"+http)
	}
	return c
}

func startEtcd(root string) *cluster {
	c := &cluster{}
	var peers []string
	var clientPorts, peerPorts []int
	for i := 1; i <= 3; i++ {
		clientPorts = append(clientPorts, freePort())
		peerPorts = append(peerPorts, freePort())
		peers = append(peers, fmt.Sprintf("e%d=http://127.0.0.1:%d", i, peerPorts[i-1]))
	}
	for i := 1; i <= 3; i++ {
		client := fmt.Sprintf("http://127.0.0.1:%d", clientPorts[i-1])
		peer := fmt.Sprintf("http://127.0.0.1:%d", peerPorts[i-1])
		args := []string{"--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(root, fmt.Sprintf("etcd%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "bench", "--log-level", "error"}
		c.procs = append(c.procs, start(*etcdBin, args, filepath.Join(root, fmt.Sprintf("etcd%d.log", i))))
		c.urls = append(c.urls, client)
	}
	for _, u := range c.urls {
		waitHTTP(u + "/health")
	}
	return c
}

// result of one round.
type result struct {
	ok, errs  int
	latencies []time.Duration
	cpu       time.Duration
	elapsed   time.Duration
}

func (r *result) add(o result) {
	r.ok += o.ok
	r.errs += o.errs
	r.latencies = append(r.latencies, o.latencies...)
	r.cpu += o.cpu
	r.elapsed += o.elapsed
}

// load runs `clients` workers calling put(worker, i) for `secs`.
func load(c *cluster, put func(worker, i int) error) result {
	var mu sync.Mutex
	var res result
	cpu0 := c.cpu()
	started := time.Now()
	deadline := started.Add(time.Duration(*secs) * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var local result
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := put(w, i); err != nil {
					local.errs++
					continue
				}
				local.ok++
				local.latencies = append(local.latencies, time.Since(t))
			}
			mu.Lock()
			res.add(local)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.elapsed = time.Since(started)
	res.cpu = c.cpu() - cpu0
	return res
}

func quantile(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[int(q*float64(len(l)-1))]
}

func main() {
	flag.Parse()
	if *etcdBin == "" {
		fmt.Fprintln(os.Stderr, "-etcd is required")
		os.Exit(2)
	}
	root := *dir
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", "wire-kv-grpc-"); err != nil {
			panic(err)
		}
		defer os.RemoveAll(root)
	}
	wire := startWire(root)
	defer wire.stop()
	etcd := startEtcd(root)
	defer etcd.stop()

	value := bytes.Repeat([]byte("v"), *valueLen)
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}, Timeout: 10 * time.Second}
	wirePut := func(w, i int) error {
		url := fmt.Sprintf("%s/kv/bench/%d/%d", wire.urls[w%len(wire.urls)], w, i)
		req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(value))
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// One gRPC client per worker, each to one member in turn (as the HTTP clients spread).
	etcdClients := make([]*clientv3.Client, *clients)
	for w := range etcdClients {
		cl, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.urls[w%len(etcd.urls)]}, DialTimeout: 5 * time.Second})
		if err != nil {
			panic(err)
		}
		defer cl.Close()
		etcdClients[w] = cl
	}
	etcdPut := func(w, i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := etcdClients[w].Put(ctx, fmt.Sprintf("bench/%d/%d", w, i), string(value))
		return err
	}

	fmt.Printf("kv over each system's native client: %d clients, %ds rounds, %d-byte values, 3 nodes each on 127.0.0.1\n", *clients, *secs, *valueLen)
	var totals [2]result
	for r := 1; r <= *rounds; r++ {
		for s, put := range []func(int, int) error{wirePut, etcdPut} {
			c := []*cluster{wire, etcd}[s]
			res := load(c, put)
			fmt.Fprintf(os.Stderr, "round %d: %s %.0f ops/s\n", r, []string{"wire", "etcd"}[s], float64(res.ok)/res.elapsed.Seconds())
			totals[s].add(res)
		}
	}
	names := []string{"wire (HTTP)", "etcd 3.6 (gRPC)"}
	var ops, p99, cpuPer [2]float64
	for s, t := range totals {
		ops[s] = float64(t.ok) / t.elapsed.Seconds()
		p99[s] = float64(quantile(t.latencies, 0.99).Microseconds()) / 1000
		cpuPer[s] = float64(t.cpu.Microseconds()) / float64(max(t.ok, 1))
		fmt.Printf("%-16s %8.0f ops/s   p50 %7.2f ms   p99 %7.2f ms   CPU per write %5.0f µs (3 servers)   (%d ok, %d errors)\n",
			names[s], ops[s], float64(quantile(t.latencies, 0.5).Microseconds())/1000, p99[s], cpuPer[s], t.ok, t.errs)
	}
	fmt.Printf("ratio wire/etcd ops/s = %.2fx (target 3x)   p99 wire/etcd = %.2f   CPU per write wire/etcd = %.2f\n",
		ops[0]/ops[1], p99[0]/p99[1], cpuPer[0]/cpuPer[1])
}
