//go:build tools

// The etcd server this benchmark builds and runs (go build go.etcd.io/etcd/server/v3).
package main

import _ "go.etcd.io/etcd/server/v3"
