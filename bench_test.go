// bench_test.go - generation speed on the default model (as in the
// original README: go test -bench=. -benchtime=1x -run=^$), and what the Go
// layer costs over the C API. GOMLX_BENCH_MODEL (and GOMLX_BENCH_DEVICE:
// cpu or gpu) measure another model instead, as tools/bench.py does.

package gomlx

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

const benchPrompt = "Write a long story about a robot who learns to paint."

var benched struct {
	once  sync.Once
	model *Model
	err   error
}

// benchModel is the model the benchmarks measure: GOMLX_BENCH_MODEL on
// GOMLX_BENCH_DEVICE (cpu, gpu; unset: auto) when set, loaded once and
// closed by TestMain, else the default model the tests share.
func benchModel(b *testing.B) *Model {
	b.Helper()
	path := os.Getenv("GOMLX_BENCH_MODEL")
	if path == "" {
		return sharedModel(b)
	}
	name, device, known := os.Getenv("GOMLX_BENCH_DEVICE"), DeviceAuto, false
	for _, d := range []Device{DeviceAuto, DeviceCPU, DeviceGPU} {
		if name == "" || name == d.String() {
			device, known = d, true
			break
		}
	}
	if !known {
		b.Fatalf("GOMLX_BENCH_DEVICE=%q: want cpu, gpu or auto", name)
	}
	benched.once.Do(func() {
		benched.model, benched.err = LoadModel(context.Background(), path, WithDevice(device))
	})
	if benched.err != nil {
		b.Fatalf("loading %s: %v", path, benched.err)
	}
	return benched.model
}

func benchGenerate(b *testing.B, maxTokens int) {
	m := benchModel(b)
	in := greedy(benchPrompt, maxTokens)
	in.IgnoreEOS = true // exactly maxTokens tokens per run
	// One warm-up run, untimed.
	if _, err := m.Generate(context.Background(), in); err != nil {
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

// BenchmarkGoOverhead measures what the Go layer adds to a request. The
// same greedy 32-token raw-prompt request runs through the C API directly
// (rawGenerateText: session, generate, free, as a C program would) and
// through Model.GenerateStream (input checks, C copies of the arguments,
// the cancellation watch, a Go callback per token, the output copied into
// Go), alternating. The model's own time varies far more between runs
// than the Go layer costs, so each run's wall time is reduced by the
// library's total_ms for it: what remains is the time outside the
// generation (session setup, queueing, tokenizing, and for Go the
// binding). go-overhead-µs/op is the median difference of those remains
// over the pairs; c-ms/op and go-ms/op are the median wall times.
func BenchmarkGoOverhead(b *testing.B) {
	const tokens = 32
	m := benchModel(b)
	in := GenerateInput{Prompt: benchPrompt, MaxTokens: tokens, IgnoreEOS: true}
	if _, _, err := rawGenerateText(m, benchPrompt, tokens); err != nil { // warm-up
		b.Fatal(err)
	}
	var cWall, goWall, overhead []float64 // ms
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		n, cMs, err := rawGenerateText(m, benchPrompt, tokens)
		t1 := time.Now()
		pieces := 0
		out, err2 := m.GenerateStream(context.Background(), in, func(string) { pieces++ })
		t2 := time.Now()
		if err != nil || err2 != nil || n != tokens || out.TokenCount != tokens || pieces == 0 {
			b.Fatalf("C: %d tokens, %v; Go: %+v, %v", n, err, out, err2)
		}
		c, g := ms(t1.Sub(t0)), ms(t2.Sub(t1))
		cWall, goWall = append(cWall, c), append(goWall, g)
		overhead = append(overhead, (g-out.TotalTimeMs)-(c-cMs))
	}
	b.ReportMetric(median(cWall), "c-ms/op")
	b.ReportMetric(median(goWall), "go-ms/op")
	b.ReportMetric(median(overhead)*1000, "go-overhead-µs/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
