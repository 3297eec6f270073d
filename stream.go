// stream.go - pull-style streaming (iter.Seq2) on top of the token
// callback.

package gomlx

import (
	"context"
	"iter"
	"sync"
)

// Stream generates like GenerateStream but hands the pieces to a range
// loop:
//
//	for piece, err := range model.Stream(ctx, in) {
//		if err != nil { ... }
//		fmt.Print(piece)
//	}
//
// A failed generation ends the loop with one ("", err) pair. Breaking out
// of the loop stops the generation and returns once it has stopped; no
// goroutine is left behind. The generation runs on ahead of the loop body
// (pieces are queued, never dropped), so the body may take its time and
// may call other methods of the model.
func (m *Model) Stream(ctx context.Context, in GenerateInput) iter.Seq2[string, error] {
	return streamSeq(ctx, func(ctx context.Context, fn func(string) error) (*GenerateOutput, error) {
		return m.generate(ctx, nil, in, fn)
	}, nil)
}

// genFunc runs one generation with a token callback.
type genFunc func(ctx context.Context, fn func(string) error) (*GenerateOutput, error)

// streamSeq turns gen into an iterator; done, if not nil, sees the final
// output and error (the tests use it).
func streamSeq(ctx context.Context, gen genFunc, done func(*GenerateOutput, error)) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		q := &pieceQueue{ready: make(chan struct{}, 1)}
		finished := make(chan struct{})
		var out *GenerateOutput
		var err error
		go func() {
			defer close(finished)
			out, err = gen(ctx, q.push)
		}()
		// On break (or a panic in the loop body) the generation is
		// cancelled and awaited, so its goroutine never outlives the loop.
		defer func() {
			cancel()
			<-finished
			if done != nil {
				done(out, err)
			}
		}()
		for {
			select {
			case <-q.ready:
			case <-finished:
			}
			pieces, last := q.take(finished)
			for _, p := range pieces {
				if !yield(p, nil) {
					return
				}
			}
			if last {
				if err != nil {
					yield("", err)
				}
				return
			}
		}
	}
}

// pieceQueue is an unbounded queue from the C worker thread to the loop:
// push never blocks, so the generation never waits for the loop body.
type pieceQueue struct {
	mu     sync.Mutex
	pieces []string
	ready  chan struct{} // holds one signal when pieces may be waiting
}

func (q *pieceQueue) push(s string) error {
	q.mu.Lock()
	q.pieces = append(q.pieces, s)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return nil
}

// take returns the queued pieces, and whether they are the last ones (the
// generation has finished: nothing more can be pushed).
func (q *pieceQueue) take(finished <-chan struct{}) ([]string, bool) {
	last := false
	select {
	case <-finished:
		last = true
	default:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.pieces
	q.pieces = nil
	return p, last
}
