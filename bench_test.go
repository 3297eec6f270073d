// bench_test.go - generation speed on the default model (as in the
// original README: go test -bench=. -benchtime=1x -run=^$), and what the Go
// layer costs over the C API.

package gomlx

import (
	"context"
	"testing"
	"time"
)

const benchPrompt = "Write a long story about a robot who learns to paint."

func benchGenerate(b *testing.B, maxTokens int) {
	m := sharedModel(b)
	in := greedy(benchPrompt, maxTokens)
	in.IgnoreEOS = true                                             // exactly maxTokens tokens per run
	if _, err := m.Generate(context.Background(), in); err != nil { // warm-up
		b.Fatal(err)
	}
	var tps, ptps, ttft float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := m.Generate(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		if out.TokenCount != maxTokens {
			b.Fatalf("%d tokens, want %d", out.TokenCount, maxTokens)
		}
		tps += out.TokensPerSecond
		ptps += out.PromptTokensPerSecond
		ttft += out.TimeToFirstTokenMs
	}
	n := float64(b.N)
	b.ReportMetric(tps/n, "tok/s")
	b.ReportMetric(ptps/n, "prompt-tok/s")
	b.ReportMetric(ttft/n, "ttft-ms")
}

func BenchmarkGenerate32(b *testing.B)  { benchGenerate(b, 32) }
func BenchmarkGenerate128(b *testing.B) { benchGenerate(b, 128) }

// BenchmarkGoOverhead runs the same greedy 32-token raw-prompt request
// through the C API directly (rawGenerateText: session, generate, free)
// and through Model.GenerateStream (input checks, C copies of the
// arguments, the cancellation watch, a Go callback per token, the output
// copied into Go), alternating so drift hits both alike. It reports both
// wall times per request and the Go layer's cost in µs per request.
func BenchmarkGoOverhead(b *testing.B) {
	const tokens = 32
	m := sharedModel(b)
	in := GenerateInput{Prompt: benchPrompt, MaxTokens: tokens, IgnoreEOS: true}
	if _, err := rawGenerateText(m, benchPrompt, tokens); err != nil { // warm-up
		b.Fatal(err)
	}
	var cTime, goTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		n, err := rawGenerateText(m, benchPrompt, tokens)
		t1 := time.Now()
		pieces := 0
		out, err2 := m.GenerateStream(context.Background(), in, func(string) { pieces++ })
		t2 := time.Now()
		if err != nil || err2 != nil || n != tokens || out.TokenCount != tokens {
			b.Fatalf("C: %d tokens, %v; Go: %+v, %v", n, err, out, err2)
		}
		cTime += t1.Sub(t0)
		goTime += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(cTime.Milliseconds())/n, "c-ms/op")
	b.ReportMetric(float64(goTime.Milliseconds())/n, "go-ms/op")
	b.ReportMetric(float64((goTime-cTime).Microseconds())/n, "go-overhead-µs/op")
}
