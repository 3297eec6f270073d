// session.go - a conversation that keeps its KV cache between turns.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

import (
	"context"
	"iter"
	"sync"
)

// Session holds a KV cache and the tokens in it, so that a conversation
// that goes on reuses the work of its earlier turns: give each Generate
// the whole conversation so far (with the assistant's previous answers);
// the prompt prefix that the cache already holds is not computed again
// (see GenerateOutput.CachedTokens).
//
// A Session is safe for concurrent use, but its generations run one at a
// time (they share one cache). Close frees it; closing the model closes
// all its sessions.
type Session struct {
	m   *Model
	mu  sync.Mutex // held for every use of ptr
	ptr *C.gomlx_session
}

// NewSession starts an empty session on the model.
func (m *Model) NewSession() (*Session, error) {
	mp, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	s := &Session{m: m}
	if err := call(func() C.gomlx_status { return C.gomlx_session_new(mp, &s.ptr) }); err != nil {
		return nil, err
	}
	m.sessMu.Lock()
	m.sessions[s] = struct{}{}
	m.sessMu.Unlock()
	return s, nil
}

// Generate is Model.Generate in this session.
func (s *Session) Generate(ctx context.Context, in GenerateInput) (*GenerateOutput, error) {
	return s.m.generate(ctx, s, in, nil)
}

// GenerateStream is Model.GenerateStream in this session.
func (s *Session) GenerateStream(ctx context.Context, in GenerateInput, fn func(token string)) (*GenerateOutput, error) {
	return s.m.generate(ctx, s, in, adapt(fn))
}

// GenerateStreamFunc is Model.GenerateStreamFunc in this session.
func (s *Session) GenerateStreamFunc(ctx context.Context, in GenerateInput, fn func(token string) error) (*GenerateOutput, error) {
	return s.m.generate(ctx, s, in, fn)
}

// Stream is Model.Stream in this session.
func (s *Session) Stream(ctx context.Context, in GenerateInput) iter.Seq2[string, error] {
	return streamSeq(ctx, func(ctx context.Context, fn func(string) error) (*GenerateOutput, error) {
		return s.m.generate(ctx, s, in, fn)
	}, nil)
}

// Reset forgets the cached conversation.
func (s *Session) Reset() error {
	if _, err := s.m.acquire(); err != nil {
		return err
	}
	defer s.m.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return newError(CodeClosed, "the session is closed")
	}
	return call(func() C.gomlx_status { return C.gomlx_session_reset(s.ptr) })
}

// Close frees the session's cache. It is idempotent, and a no-op once the
// model is closed (that freed the session already).
func (s *Session) Close() error {
	if _, err := s.m.acquire(); err != nil {
		return nil
	}
	defer s.m.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr == nil {
		return nil
	}
	s.m.sessMu.Lock()
	delete(s.m.sessions, s)
	s.m.sessMu.Unlock()
	C.gomlx_session_free(s.ptr)
	s.ptr = nil
	return nil
}

// free is Model.Close's part: the model's write lock is held, so no call
// of this session is in flight.
func (s *Session) free() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		C.gomlx_session_free(s.ptr)
		s.ptr = nil
	}
}
