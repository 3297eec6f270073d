// internal_bench.go - raw C API calls for the benchmarks and tests (cgo is
// not allowed in _test.go files): a generation as a C program would make
// it, for BenchmarkGoOverhead, and a bare gomlx_cancel.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import "unsafe"

// rawGenerateText runs one greedy raw-text generation of exactly maxTokens
// tokens (EOS ignored) in a fresh session and returns the tokens made and
// the library's own total_ms for the generation.
func rawGenerateText(m *Model, prompt string, maxTokens int) (int, float64, error) {
	mp, err := m.acquire()
	if err != nil {
		return 0, 0, err
	}
	defer m.release()
	cprompt := C.CString(prompt)
	defer C.free(unsafe.Pointer(cprompt))
	p := C.gomlx_generate_params_default()
	p.max_tokens = C.int(maxTokens)
	p.temperature = 0
	p.ignore_eos = 1
	var sp *C.gomlx_session
	var res C.gomlx_result
	err = call(func() C.gomlx_status {
		if st := C.gomlx_session_new(mp, &sp); st != C.GOMLX_OK {
			return st
		}
		return C.gomlx_generate_text(sp, cprompt, &p, &res)
	})
	n, ms := int(res.stats.generated_tokens), float64(res.stats.total_ms)
	C.gomlx_result_free(&res)
	C.gomlx_session_free(sp)
	return n, ms, err
}

// rawCancel cancels the session's current or next generation, as a ctx
// that ends just after a call has returned would.
func rawCancel(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	C.gomlx_cancel(s.ptr)
}
