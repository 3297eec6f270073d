// stream_test.go - iter.Seq2 streaming and cancellation.

package gomlx

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// long is a request that runs far longer than any test waits.
func long() GenerateInput {
	in := greedy("Write a very long story about the sea.", 4000)
	in.IgnoreEOS = true
	return in
}

func TestStreamIter(t *testing.T) {
	m := sharedModel(t)
	in := greedy("Name three colors.", 24)
	var got strings.Builder
	for piece, err := range m.Stream(context.Background(), in) {
		if err != nil {
			t.Fatalf("Stream: %v", err)
		}
		got.WriteString(piece)
	}
	want, err := m.Generate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.Content {
		t.Errorf("Stream gave %q, Generate %q", got.String(), want.Content)
	}
}

func TestStreamBreakStops(t *testing.T) {
	m := sharedModel(t)
	before := runtime.NumGoroutine()
	var final *GenerateOutput
	var finalErr error
	seq := streamSeq(context.Background(), func(ctx context.Context, fn func(string) error) (*GenerateOutput, error) {
		return m.generate(ctx, nil, long(), fn)
	}, func(out *GenerateOutput, err error) { final, finalErr = out, err })
	start := time.Now()
	n := 0
	for _, err := range seq {
		if err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if n++; n == 3 {
			break
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("break took %v to stop the generation", d)
	}
	if final == nil || final.StopReason != StopCancelled || final.TokenCount >= 4000 {
		t.Errorf("after break: %+v, %v; want a cancelled partial output", final, finalErr)
	}
	if !errors.Is(finalErr, ErrCancelled) {
		t.Errorf("after break the generation returned %v, want ErrCancelled", finalErr)
	}
	settleGoroutines(t, before)

	// The public Stream with a break: still no goroutine left over.
	for range m.Stream(context.Background(), long()) {
		break
	}
	settleGoroutines(t, before)
}

// The loop body may call the model while the generation is running.
func TestStreamBodyMayUseModel(t *testing.T) {
	m := sharedModel(t)
	n := 0
	for piece, err := range m.Stream(context.Background(), greedy("Name three colors.", 8)) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Tokenize(piece, false); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Error("no pieces")
	}
}

func TestCancelMidGeneration(t *testing.T) {
	m := sharedModel(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelledAt time.Time
	pieces := 0
	out, err := m.GenerateStream(ctx, long(), func(string) {
		if pieces++; pieces == 3 {
			cancelledAt = time.Now()
			cancel()
		}
	})
	took := time.Since(cancelledAt)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want ErrCancelled and context.Canceled", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeCancelled {
		t.Errorf("err %#v is not an *Error with CodeCancelled", err)
	}
	if out == nil || out.StopReason != StopCancelled || out.TokenCount < 3 || out.TokenCount > 10 || out.Content == "" {
		t.Errorf("partial output %+v, want about 3 tokens, StopCancelled", out)
	}
	if took > 2*time.Second {
		t.Errorf("cancel took %v to return", took)
	}
	settleGoroutines(t, before)

	// Cancelled before the start: no work, same errors.
	out, err = m.Generate(ctx, greedy("hi", 4))
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) || out == nil || out.TokenCount != 0 {
		t.Errorf("cancelled ctx: %+v, %v", out, err)
	}
	// A deadline works the same way.
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	if _, err := m.Generate(dctx, long()); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v, want ErrCancelled and DeadlineExceeded", err)
	}
	// The model is fine afterwards.
	if _, err := m.Generate(context.Background(), greedy("hi", 4)); err != nil {
		t.Errorf("after cancellations: %v", err)
	}
}

func TestSessionCancelDoesNotLeak(t *testing.T) {
	m := sharedModel(t)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = s.GenerateStream(ctx, long(), func(string) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	// A cancellation must not carry over to the session's next call, not
	// even one that reaches the library after a call has returned.
	rawCancel(s)
	for i := 0; i < 3; i++ {
		if _, err := s.Generate(context.Background(), greedy("hi", 4)); err != nil {
			t.Fatalf("call %d after a cancellation: %v", i, err)
		}
	}
}
