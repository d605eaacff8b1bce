package main

// The cgo side: libwire's header, the link flags, and the C shims Go needs (a Go function
// cannot be handed to C as a wire_transform_fn directly).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/debug/libwire.a -lpthread -ldl -lm -lz
#include <stdlib.h>
#include "wire.h"

extern wire_status goDoubleEvens(void *user_data, wire_batch *in, wire_batch_builder *out);

static wire_status register_go_transform(wire_node *node, const char *name) {
	return wire_node_register_transform(node, name, (wire_transform_fn)goDoubleEvens, NULL, NULL);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Error is a failed libwire call: its status and message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("wire status %d: %s", e.Status, e.Message) }

func check(s C.wire_status) error {
	if s == C.WIRE_OK {
		return nil
	}
	msg := "(no message)"
	if p := C.wire_last_error(); p != nil {
		msg = C.GoString(p)
	}
	return &Error{Status: int(s), Message: msg}
}

// Node is a node hosted by this process.
type Node struct{ h *C.wire_node }

// StartNode starts a node from JSON or TOML config text.
func StartNode(config string) (*Node, error) {
	c := C.CString(config)
	defer C.free(unsafe.Pointer(c))
	var h *C.wire_node
	if err := check(C.wire_node_start(c, &h)); err != nil {
		return nil, err
	}
	return &Node{h}, nil
}

func (n *Node) Put(key string, value []byte) error {
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	var p *C.uint8_t
	if len(value) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&value[0]))
	}
	return check(C.wire_kv_put(n.h, k, p, C.size_t(len(value))))
}

func (n *Node) Get(key string) ([]byte, error) {
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	var p *C.uint8_t
	var l C.size_t
	if err := check(C.wire_kv_get(n.h, k, &p, &l)); err != nil {
		return nil, err
	}
	defer C.wire_bytes_free(p, l)
	return C.GoBytes(unsafe.Pointer(p), C.int(l)), nil
}

// RegisterDoubleEvens registers the Go transform below under name.
func (n *Node) RegisterDoubleEvens(name string) error {
	c := C.CString(name)
	defer C.free(unsafe.Pointer(c))
	return check(C.register_go_transform(n.h, c))
}

func (n *Node) Apply(spec string) error {
	c := C.CString(spec)
	defer C.free(unsafe.Pointer(c))
	return check(C.wire_pipeline_apply(n.h, c, nil))
}

func (n *Node) PipelineStatus(name string) (string, error) {
	c := C.CString(name)
	defer C.free(unsafe.Pointer(c))
	var out *C.char
	if err := check(C.wire_pipeline_status(n.h, c, &out)); err != nil {
		return "", err
	}
	defer C.wire_string_free(out)
	return C.GoString(out), nil
}

func (n *Node) Shutdown() error { return check(C.wire_node_shutdown(n.h)) }
func (n *Node) Free() error     { return check(C.wire_node_free(n.h)) }

func version() string { return C.GoString(C.wire_version()) }

// goDoubleEvens: {"n": N} -> {"n": N, "doubled": 2N} for even N, odd N dropped, 13
// rejected. Called by libwire on a partition's thread.
//
//export goDoubleEvens
func goDoubleEvens(_ unsafe.Pointer, in *C.wire_batch, out *C.wire_batch_builder) C.wire_status {
	var n C.size_t
	if C.wire_batch_len(in, &n) != C.WIRE_OK {
		return C.WIRE_ERR_INTERNAL
	}
	for i := C.size_t(0); i < n; i++ {
		var p *C.char
		var l C.size_t
		if C.wire_batch_value(in, i, &p, &l) != C.WIRE_OK {
			return C.WIRE_ERR_INTERNAL
		}
		v, ok := parseN(C.GoStringN(p, C.int(l)))
		switch {
		case !ok:
			reject(out, i, "no number n")
		case v == 13:
			reject(out, i, "13 is unlucky")
		case v%2 == 0:
			js := fmt.Sprintf(`{"n":%d,"doubled":%d,"by":"go"}`, v, 2*v)
			cs := C.CString(js)
			s := C.wire_batch_builder_emit(out, i, cs, C.size_t(len(js)))
			C.free(unsafe.Pointer(cs))
			if s != C.WIRE_OK {
				return s
			}
		}
	}
	return C.WIRE_OK
}

func reject(out *C.wire_batch_builder, i C.size_t, why string) {
	c := C.CString(why)
	defer C.free(unsafe.Pointer(c))
	C.wire_batch_builder_reject(out, i, c)
}
