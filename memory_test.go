// memory_test.go - generations and Close give their memory back.

package gomlx

import (
	"context"
	"errors"
	"testing"
)

const memTolerance = 1 << 20 // 1 MB

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestMemoryReturnsToBaseline(t *testing.T) {
	ClearCache()
	preLoad := GetMemoryStats().Active
	m, err := LoadModel(context.Background(), defaultModelFile(t))
	if err != nil {
		t.Fatal(err)
	}
	ClearCache()
	loaded := GetMemoryStats()
	if loaded.Active <= preLoad {
		t.Errorf("active memory %d after load, %d before: the weights are not counted", loaded.Active, preLoad)
	}
	ResetPeakMemory()
	for i := 0; i < 20; i++ {
		if _, err := m.Generate(context.Background(), greedy("Tell me about the moon.", 12)); err != nil {
			t.Fatalf("generation %d: %v", i, err)
		}
	}
	after := GetMemoryStats()
	if after.Peak <= loaded.Active {
		t.Errorf("peak %d not above the loaded model's %d: generations used no memory?", after.Peak, loaded.Active)
	}
	ClearCache()
	after = GetMemoryStats()
	if d := absDiff(after.Active, loaded.Active); d > memTolerance {
		t.Errorf("after 20 generations active memory is %d, after load it was %d (%d bytes apart)", after.Active, loaded.Active, d)
	}
	if after.Cache != 0 {
		t.Errorf("ClearCache left %d bytes in the cache", after.Cache)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	ClearCache()
	closed := GetMemoryStats().Active
	if d := absDiff(closed, preLoad); d > memTolerance {
		t.Errorf("after Close active memory is %d, before the load it was %d (%d bytes apart)", closed, preLoad, d)
	}
}

func TestMemoryLimit(t *testing.T) {
	if _, err := SetMemoryLimit(0); !errors.Is(err, ErrBadInput) {
		t.Errorf("SetMemoryLimit(0): %v, want ErrBadInput", err)
	}
	original, err := SetMemoryLimit(5 << 40)
	if err != nil || original == 0 {
		t.Fatalf("SetMemoryLimit: %d, %v", original, err)
	}
	defer SetMemoryLimit(original)
	if prev, err := SetMemoryLimit(original); err != nil || prev != 5<<40 {
		t.Errorf("SetMemoryLimit returned %d, %v; want the %d set before", prev, err, uint64(5<<40))
	}
}

func TestCacheLimitZeroKeepsNoBuffers(t *testing.T) {
	m, err := LoadModel(context.Background(), defaultModelFile(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	original := SetCacheLimit(0)
	defer SetCacheLimit(original)
	ClearCache()
	if _, err := m.Generate(context.Background(), greedy("Tell me about the moon.", 8)); err != nil {
		t.Fatal(err)
	}
	if c := GetMemoryStats().Cache; c != 0 {
		t.Errorf("%d bytes cached after a generation under a cache limit of 0", c)
	}
	if prev := SetCacheLimit(original); prev != 0 {
		t.Errorf("SetCacheLimit returned %d, want the 0 set before", prev)
	}
}
