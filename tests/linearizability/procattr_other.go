//go:build !linux

package main

import "syscall"

// childProcAttr puts each node in its own process group (a Ctrl-C at the terminal reaches
// only the harness, which then kills the nodes itself). Only Linux can also have the
// kernel kill the nodes when the harness dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
