// internal_bench.go - a raw C API generation for BenchmarkGoOverhead (cgo
// is not allowed in _test.go files). It does what a C program would do:
// no Go conversions beyond the prompt string, no callback, no watchers.

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
