// bridge.go - the small C glue of the package: trampolines from the C
// callback types to the exported Go functions of callbacks.go, the error
// capture of every call, and C-owned memory for request arguments.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"

// Defined in callbacks.go (//export). A cgo.Handle travels as the user
// pointer, so no Go pointer is ever stored in C memory.
extern int gomlxGoToken(char *text, size_t len, uintptr_t handle);
extern void gomlxGoProgress(float fraction, char *message, uintptr_t handle);

static int gomlx_go_token(const char *text, size_t len, void *user) {
	return gomlxGoToken((char *)text, len, (uintptr_t)user);
}

static void gomlx_go_progress(float fraction, const char *message, void *user) {
	gomlxGoProgress(fraction, (char *)message, (uintptr_t)user);
}

static void gomlx_go_set_token(gomlx_generate_params *p, uintptr_t handle) {
	p->on_token = gomlx_go_token;
	p->user = (void *)handle;
}

static void gomlx_go_set_progress(gomlx_load_params *p, uintptr_t handle) {
	p->progress = gomlx_go_progress;
	p->progress_user = (void *)handle;
}
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// call runs one C call and turns a failed status into an *Error carrying
// gomlx_last_error(). The message is per OS thread, so the goroutine stays
// on its thread between the call and the read.
func call(f func() C.gomlx_status) error {
	runtime.LockOSThread()
	st := f()
	var msg string
	if st != C.GOMLX_OK {
		msg = C.GoString(C.gomlx_last_error())
	}
	runtime.UnlockOSThread()
	if st == C.GOMLX_OK {
		return nil
	}
	return newError(Code(st), msg)
}

func setTokenCallback(p *C.gomlx_generate_params, h cgo.Handle) {
	C.gomlx_go_set_token(p, C.uintptr_t(h))
}

func setProgressCallback(p *C.gomlx_load_params, h cgo.Handle) {
	C.gomlx_go_set_progress(p, C.uintptr_t(h))
}

// cArena owns the C memory of one call's arguments; free releases it all.
type cArena struct {
	ptrs []unsafe.Pointer
}

func (a *cArena) keep(p unsafe.Pointer) unsafe.Pointer {
	a.ptrs = append(a.ptrs, p)
	return p
}

func (a *cArena) str(s string) *C.char {
	return (*C.char)(a.keep(unsafe.Pointer(C.CString(s))))
}

func (a *cArena) bytes(b []byte) *C.uint8_t {
	return (*C.uint8_t)(a.keep(C.CBytes(b)))
}

// alloc returns n zeroed bytes (at least 1, so the pointer is never NULL).
func (a *cArena) alloc(n int) unsafe.Pointer {
	if n < 1 {
		n = 1
	}
	return a.keep(C.calloc(1, C.size_t(n)))
}

func (a *cArena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}
