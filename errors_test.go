// errors_test.go - errors.Is for every kind of failure, and Close.

package gomlx

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestErrorType(t *testing.T) {
	err := error(&Error{Code: CodeFormat, Msg: "truncated"})
	if !errors.Is(err, ErrFormat) || errors.Is(err, ErrBackend) || !errors.Is(err, &Error{Code: CodeFormat}) {
		t.Errorf("errors.Is does not follow the code")
	}
	if got := err.Error(); got != "gomlx: bad format: truncated" {
		t.Errorf("Error() = %q", got)
	}
	c := &Error{Code: CodeCancelled, Msg: "x", Cause: context.Canceled}
	if !errors.Is(c, ErrCancelled) || !errors.Is(c, context.Canceled) {
		t.Errorf("a cancellation must match ErrCancelled and its cause")
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := LoadModel(context.Background(), filepath.Join(t.TempDir(), "nope.gguf"))
	if !errors.Is(err, ErrModelNotFound) {
		t.Fatalf("err %v, want ErrModelNotFound", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Msg == "" {
		t.Errorf("err %#v carries no message from the library", err)
	}
}

func TestLoadUnknownArchitecture(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"model_type": "no-such-arch", "architectures": ["NoSuchArchForCausalLM"], "hidden_size": 8}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadModel(context.Background(), dir)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err %v, want ErrUnsupported", err)
	}
	if !strings.Contains(err.Error(), "no-such-arch") {
		t.Errorf("message %q does not name the model_type", err)
	}
}

func TestLoadCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LoadModel(ctx, defaultModelFile(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestLoadProgressAndOptions(t *testing.T) {
	var calls int
	var last float32
	m := loadFresh(t, WithProgress(func(p float32, msg string) { calls++; last = p }),
		WithDevice(DeviceCPU), WithContextLength(512), WithMaxTokens(5), WithCPUKernels(true))
	if calls == 0 || last < 0.999 {
		t.Errorf("progress called %d times, last %v; want calls ending at 1", calls, last)
	}
	info := m.Info()
	if info.ContextLength != 512 || info.Device != "cpu" || info.Architecture != "llama" || info.Format != "gguf" {
		t.Errorf("info %+v, want llama/gguf on cpu with context 512", info)
	}
	if m.SupportsVision() {
		t.Errorf("SmolLM2 claims vision")
	}
	// SmolLM2's GGUF has no output.weight: the unembedding is the
	// embedding table, so a decoded token reads every weight.
	if info.StepWeightBytes != info.WeightBytes || info.WeightBytes == 0 {
		t.Errorf("StepWeightBytes %d, WeightBytes %d; want equal and > 0 (tied embeddings)",
			info.StepWeightBytes, info.WeightBytes)
	}
	in := greedy("Write a long story.", 0)
	in.IgnoreEOS = true
	out, err := m.Generate(context.Background(), in)
	if err != nil || out.TokenCount != 5 || out.StopReason != StopMaxTokens {
		t.Errorf("WithMaxTokens(5): %+v, %v", out, err)
	}
}

func TestBadInput(t *testing.T) {
	m := sharedModel(t)
	ctx := context.Background()
	for name, in := range map[string]GenerateInput{
		"empty":       {},
		"no messages": {Messages: []Message{}},
		"bad role":    {Messages: []Message{{Role: "robot", Content: "hi"}}},
		"temperature": {Messages: userMsg("hi"), Temperature: -1},
		"top_p":       {Messages: userMsg("hi"), TopP: 1.5},
		"max tokens":  {Messages: userMsg("hi"), MaxTokens: -3},
	} {
		if _, err := m.Generate(ctx, in); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: err %v, want ErrBadInput", name, err)
		}
	}
	if _, err := m.ChatPrompt(nil); !errors.Is(err, ErrBadInput) {
		t.Errorf("ChatPrompt(nil): %v, want ErrBadInput", err)
	}
	withImage := []Message{{Role: RoleUser, Content: "what is this?",
		Images: []Image{{Image: image.NewRGBA(image.Rect(0, 0, 4, 4))}}}}
	if _, err := m.Generate(ctx, GenerateInput{Messages: withImage}); !errors.Is(err, ErrUnsupported) ||
		!strings.Contains(err.Error(), "does not support images") {
		t.Errorf("image on a text model: %v, want ErrUnsupported", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	m := loadFresh(t)
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err = m.Generate(ctx, greedy("hi", 4))
	check("Generate", err)
	_, err = m.GenerateStream(ctx, greedy("hi", 4), func(string) {})
	check("GenerateStream", err)
	for _, err := range m.Stream(ctx, greedy("hi", 4)) {
		check("Stream", err)
	}
	_, err = m.Tokenize("hi", true)
	check("Tokenize", err)
	_, err = m.Detokenize([]int32{1})
	check("Detokenize", err)
	_, err = m.ChatPrompt(userMsg("hi"))
	check("ChatPrompt", err)
	_, err = m.NewSession()
	check("NewSession", err)
	_, err = s.Generate(ctx, greedy("hi", 4))
	check("Session.Generate", err)
	check("Session.Reset", s.Reset())
	if err := s.Close(); err != nil {
		t.Errorf("Session.Close after the model's Close: %v", err)
	}
	if m.Info().Name == "" {
		t.Errorf("Info is gone after Close")
	}
}

// Close cancels a generation in flight; it returns ErrClosed promptly.
func TestCloseDuringGeneration(t *testing.T) {
	m := loadFresh(t)
	started := make(chan struct{})
	type result struct {
		out *GenerateOutput
		err error
	}
	done := make(chan result, 1)
	go func() {
		n := 0
		out, err := m.GenerateStream(context.Background(), long(), func(string) {
			if n++; n == 1 {
				close(started)
			}
		})
		done <- result{out, err}
	}()
	<-started
	t0 := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, ErrCancelled) {
		t.Errorf("generation during Close: %v, want ErrClosed and ErrCancelled", r.err)
	}
	if r.out == nil || r.out.TokenCount == 0 {
		t.Errorf("no partial output: %+v", r.out)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}
