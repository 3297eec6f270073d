// generate.go - one generation: the C call, its cancellation by ctx or
// Close, streaming through the token callback, and the result in Go.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Generate renders in.Messages with the model's chat template (or takes
// in.Prompt / in.PromptIDs raw) and returns the whole answer.
//
// Each call runs in a session of its own, freed when it returns: calls are
// independent (no state carries over from one to the next, so the same
// greedy input always gives the same answer, and the KV cache's memory is
// returned at once), and concurrent calls are safe. Creating a session
// costs nothing next to a prefill. For multi-turn chat that reuses the KV
// cache of the previous turns, use NewSession.
//
// When ctx is cancelled or the model is closed during the generation, the
// partial output is returned with an error matching ErrCancelled and
// ctx.Err() (or ErrClosed).
func (m *Model) Generate(ctx context.Context, in GenerateInput) (*GenerateOutput, error) {
	return m.generate(ctx, nil, in, nil)
}

// GenerateStream is Generate that also calls fn with each piece of text as
// it is generated (never half a UTF-8 character, never part of a stop
// string). The pieces concatenate to the output's Content.
//
// fn runs on the model's C worker thread while the generation waits for
// it: keep it short, and do not call methods of the same model from it
// (they would queue behind this generation and deadlock).
func (m *Model) GenerateStream(ctx context.Context, in GenerateInput, fn func(token string)) (*GenerateOutput, error) {
	return m.generate(ctx, nil, in, adapt(fn))
}

// adapt turns a seed-style callback into one that can stop (nil stays nil).
func adapt(fn func(string)) func(string) error {
	if fn == nil {
		return nil
	}
	return func(s string) error { fn(s); return nil }
}

// GenerateStreamFunc is GenerateStream whose callback can stop the
// generation by returning an error; that error is returned with the output
// so far (StopReason StopCallback). A panic in fn stops the generation and
// is raised again on the calling goroutine.
func (m *Model) GenerateStreamFunc(ctx context.Context, in GenerateInput, fn func(token string) error) (*GenerateOutput, error) {
	return m.generate(ctx, nil, in, fn)
}

// generate runs one request in session s, or in a session of its own when
// s is nil. fn, if not nil, receives the pieces.
func (m *Model) generate(ctx context.Context, s *Session, in GenerateInput, fn func(string) error) (*GenerateOutput, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if err := m.checkImages(in.Messages); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return &GenerateOutput{StopReason: StopCancelled},
			&Error{Code: CodeCancelled, Msg: "cancelled before the generation started", Cause: err}
	}
	mp, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()

	var sp *C.gomlx_session
	if s == nil {
		if err := call(func() C.gomlx_status { return C.gomlx_session_new(mp, &sp) }); err != nil {
			return nil, err
		}
		defer C.gomlx_session_free(sp)
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ptr == nil {
			return nil, newError(CodeClosed, "the session is closed")
		}
		sp = s.ptr
	}

	var a cArena
	defer a.free()
	params := in.params(&a, m.maxTokens)
	var msgs *C.gomlx_message
	var nMsgs C.int
	var prompt *C.char
	var ids *C.int32_t
	switch {
	case len(in.Messages) > 0:
		if msgs, nMsgs, err = a.messages(in.Messages); err != nil {
			return nil, err
		}
	case in.Prompt != "":
		prompt = a.str(in.Prompt)
	default:
		ids = (*C.int32_t)(unsafe.Pointer(&in.PromptIDs[0])) // read during the call only
	}
	var sink *tokenSink
	if fn != nil {
		sink = &tokenSink{fn: fn}
		h := cgo.NewHandle(sink)
		defer h.Delete()
		setTokenCallback(&params, h)
	}

	var res C.gomlx_result
	w := watch(ctx, m.closing, sp)
	err = call(func() C.gomlx_status {
		switch {
		case msgs != nil:
			return C.gomlx_generate(sp, msgs, nMsgs, &params, &res)
		case prompt != nil:
			return C.gomlx_generate_text(sp, prompt, &params, &res)
		}
		return C.gomlx_generate_ids(sp, ids, C.size_t(len(in.PromptIDs)), &params, &res)
	})
	// gomlx_cancel only affects a call in flight, so a ctx that ends just
	// as the call returns cannot leak into the next one.
	cause := w.stop()
	defer C.gomlx_result_free(&res)
	if sink != nil && sink.panicked {
		panic(sink.panicVal)
	}

	out := outputOf(&res)
	if sink != nil && sink.err != nil {
		return out, sink.err
	}
	if err != nil {
		e := err.(*Error)
		if e.Code != CodeCancelled {
			return nil, e
		}
		e.Cause = cause
		if out.StopReason == "" {
			out.StopReason = StopCancelled
		}
		return out, e
	}
	return out, nil
}

// canceller calls gomlx_cancel on the session when ctx is done or the model
// starts closing, but never after stop: the session may be freed then.
type canceller struct {
	mu      sync.Mutex
	stopped bool
	cause   error
	undo    [2]func() bool
}

func watch(ctx, closing context.Context, sp *C.gomlx_session) *canceller {
	c := &canceller{}
	fire := func(cause func() error) func() {
		return func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.stopped {
				return
			}
			if c.cause == nil {
				c.cause = cause()
			}
			C.gomlx_cancel(sp) // never blocks
		}
	}
	c.undo[0] = context.AfterFunc(ctx, fire(ctx.Err))
	c.undo[1] = context.AfterFunc(closing, fire(func() error { return ErrClosed }))
	return c
}

// stop ends the watch and returns why it cancelled, or nil.
func (c *canceller) stop() error {
	c.undo[0]()
	c.undo[1]()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	return c.cause
}

var stopReasons = map[C.gomlx_stop_reason]StopReason{
	C.GOMLX_STOP_EOS:        StopEOS,
	C.GOMLX_STOP_STRING:     StopString,
	C.GOMLX_STOP_MAX_TOKENS: StopMaxTokens,
	C.GOMLX_STOP_CANCELLED:  StopCancelled,
	C.GOMLX_STOP_CALLBACK:   StopCallback,
	C.GOMLX_STOP_CONTEXT:    StopContext,
}

func outputOf(r *C.gomlx_result) *GenerateOutput {
	st := &r.stats
	out := &GenerateOutput{
		Content:               C.GoString(r.text),
		TokenCount:            int(st.generated_tokens),
		PromptTokens:          int(st.prompt_tokens),
		CachedTokens:          int(st.cached_tokens),
		TokensPerSecond:       float64(st.decode_tps),
		PromptTokensPerSecond: float64(st.prompt_tps),
		TimeToFirstTokenMs:    float64(st.ttft_ms),
		TotalTimeMs:           float64(st.total_ms),
		PeakMemory:            uint64(st.peak_memory),
		StopReason:            stopReasons[st.stop_reason],
	}
	if r.n_tokens > 0 && r.tokens != nil {
		out.Tokens = make([]int32, int(r.n_tokens))
		copy(out.Tokens, unsafe.Slice((*int32)(unsafe.Pointer(r.tokens)), int(r.n_tokens)))
	}
	return out
}
