// A Go program hosting a Wire node through libwire (cgo, static link):
//
//	go run . DATA_DIR
//
// starts a node, writes and reads a key, registers a Go transform, runs a file -> Go
// transform -> file pipeline, checks the output and the dead letters, tries bad input and
// shuts down. Exits 0 when every check held.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func parseN(js string) (int64, bool) {
	var v struct {
		N *int64 `json:"n"`
	}
	if json.Unmarshal([]byte(js), &v) != nil || v.N == nil {
		return 0, false
	}
	return *v.N, true
}

func lines(dir string) []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(dir, "part-*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(fh)
		for s.Scan() {
			out = append(out, s.Text())
		}
		fh.Close()
	}
	return out
}

func run(root string) error {
	config := fmt.Sprintf(`{"node_id": 1, "http_addr": "127.0.0.1:0", "raft_addr": "127.0.0.1:0",
		"data_dir": %q, "bootstrap": true}`, filepath.Join(root, "node"))
	node, err := StartNode(config)
	if err != nil {
		return err
	}
	if err := node.Put("greeting", []byte("hello from go")); err != nil {
		return err
	}
	got, err := node.Get("greeting")
	if err != nil || string(got) != "hello from go" {
		return fmt.Errorf("kv round trip: %q %v", got, err)
	}
	if err := node.RegisterDoubleEvens("go_double_evens"); err != nil {
		return err
	}
	input := filepath.Join(root, "numbers.jsonl")
	var b strings.Builder
	for n := 0; n < 100; n++ {
		fmt.Fprintf(&b, "{\"n\":%d}\n", n)
	}
	if err := os.WriteFile(input, []byte(b.String()), 0o644); err != nil {
		return err
	}
	spec := fmt.Sprintf(`{"name": "go-evens", "checkpoint_interval": "200ms",
		"sources": [{"type": "file", "config": {"path": %q}}],
		"transforms": [{"type": "go_double_evens"}],
		"sinks": [{"type": "file", "config": {"path": %q}}],
		"dead_letter": {"type": "file", "config": {"path": %q}}}`,
		input, filepath.Join(root, "out"), filepath.Join(root, "dead"))
	if err := node.Apply(spec); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, err := node.PipelineStatus("go-evens")
		if err != nil {
			return err
		}
		if strings.Contains(status, `"state":"finished"`) {
			break
		}
		if strings.Contains(status, `"state":"failed"`) || time.Now().After(deadline) {
			return fmt.Errorf("pipeline did not finish: %s", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := lines(filepath.Join(root, "out"))
	if len(out) != 50 || !strings.Contains(strings.Join(out, "\n"), `{"n":98,"doubled":196,"by":"go"}`) {
		return fmt.Errorf("want 50 doubled evens, got %d: %v", len(out), out)
	}
	dead := lines(filepath.Join(root, "dead"))
	if len(dead) != 1 || !strings.Contains(dead[0], "13 is unlucky") {
		return fmt.Errorf("want one dead letter for 13, got %v", dead)
	}

	// Bad input: a status and a message, never a crash.
	var werr *Error
	if err := node.Apply(`{"name": "bad", "sources": []}`); !errors.As(err, &werr) || !strings.Contains(werr.Message, "sinks") {
		return fmt.Errorf("a malformed spec should be refused naming its place, got %v", err)
	}
	if _, err := StartNode(`node_id = "one"`); err == nil {
		return fmt.Errorf("a malformed config should be refused")
	}
	if err := node.Shutdown(); err != nil {
		return err
	}
	if _, err := node.Get("greeting"); err == nil {
		return fmt.Errorf("use after shutdown should fail")
	}
	if err := node.Free(); err != nil {
		return err
	}
	if err := node.Free(); err == nil {
		return fmt.Errorf("a double free should be detected")
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-host DATA_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Printf("go host: ok (libwire %s)\n", version())
}
