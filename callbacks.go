// callbacks.go - the Go functions C calls back: one token of a streaming
// generation, and loading progress. Both arrive with a cgo.Handle; a panic
// in user code is caught here (it must not cross the C frames) and raised
// again on the calling goroutine once the C call has returned.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import "runtime/cgo"

// tokenSink receives the pieces of one generation.
type tokenSink struct {
	fn       func(string) error
	pieces   int   // pieces given to fn
	err      error // what fn returned when it stopped the generation
	panicked bool
	panicVal any
}

//export gomlxGoToken
func gomlxGoToken(text *C.char, n C.size_t, handle C.uintptr_t) (stop C.int) {
	s := cgo.Handle(handle).Value().(*tokenSink)
	if s.err != nil || s.panicked {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal = true, r
			stop = 1
		}
	}()
	s.pieces++
	if err := s.fn(C.GoStringN(text, C.int(n))); err != nil {
		s.err = err
		return 1
	}
	return 0
}

// progressSink receives loading progress.
type progressSink struct {
	fn       func(float32, string)
	panicked bool
	panicVal any
}

//export gomlxGoProgress
func gomlxGoProgress(fraction C.float, message *C.char, handle C.uintptr_t) {
	s := cgo.Handle(handle).Value().(*progressSink)
	if s.panicked {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked, s.panicVal = true, r
		}
	}()
	s.fn(float32(fraction), C.GoString(message))
}
