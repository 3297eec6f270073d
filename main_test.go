// main_test.go - shared test helpers: the default model (loaded once), the
// CLI, goroutine accounting.

package gomlx

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var shared struct {
	once  sync.Once
	model *Model
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.model != nil {
		shared.model.Close()
	}
	if benched.model != nil {
		benched.model.Close()
	}
	os.Exit(code)
}

// defaultModelFile returns the default model's path, failing the test with
// instructions when it is missing: the tests need it, they never skip.
func defaultModelFile(t testing.TB) string {
	t.Helper()
	p := DefaultModelPath()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the default model %s is missing (%v): run scripts/setup.sh (or set GOMLX_MODEL)", p, err)
	}
	return p
}

// sharedModel is the default model, loaded once for the tests that do not
// close it or measure memory.
func sharedModel(t testing.TB) *Model {
	t.Helper()
	path := defaultModelFile(t)
	shared.once.Do(func() {
		shared.model, shared.err = LoadModel(context.Background(), path)
	})
	if shared.err != nil {
		t.Fatalf("loading %s: %v", path, shared.err)
	}
	return shared.model
}

// loadFresh loads the default model for one test and closes it at the end.
func loadFresh(t testing.TB, opts ...Option) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), defaultModelFile(t), opts...)
	if err != nil {
		t.Fatalf("LoadModel: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// cliPath is the gomlx CLI of this checkout's build.
func cliPath(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("build", "gomlx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the CLI %s is missing: run make build", p)
	}
	return p
}

// settleGoroutines waits until at most n goroutines run, failing after 5s.
func settleGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines still running, want <= %d:\n%s",
				runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func userMsg(s string) []Message { return []Message{{Role: RoleUser, Content: s}} }

// greedy is a short deterministic request.
func greedy(prompt string, maxTokens int) GenerateInput {
	return GenerateInput{Messages: userMsg(prompt), MaxTokens: maxTokens}
}
