package main

import "syscall"

// childProcAttr puts each node in its own process group (a Ctrl-C at the terminal reaches
// only the harness, which then kills the nodes itself) and asks the kernel to SIGKILL the
// node if the harness dies without cleaning up (for instance, killed with -9).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
