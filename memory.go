// memory.go - MLX's process-wide memory counters, and the library version.

package gomlx

/*
#include <stdlib.h>
#include "gomlx.h"
*/
import "C"

// GetMemoryStats returns MLX's memory counters (zero if the library cannot
// read them).
func GetMemoryStats() MemoryStats {
	var ms C.gomlx_memory_stats
	if C.gomlx_get_memory_stats(&ms) != C.GOMLX_OK {
		return MemoryStats{}
	}
	return MemoryStats{Active: uint64(ms.active), Peak: uint64(ms.peak), Cache: uint64(ms.cache)}
}

// ResetPeakMemory starts a new high-water mark for MemoryStats.Peak.
func ResetPeakMemory() { C.gomlx_reset_peak_memory() }

// ClearCache returns the buffers MLX keeps for reuse (MemoryStats.Cache) to
// the system. Active memory is not affected.
func ClearCache() { C.gomlx_clear_cache() }

// SetMemoryLimit sets MLX's memory limit for the whole process, in bytes,
// and returns the one before. It is a guideline, not a cap: past it MLX
// waits for queued work to finish (and free its buffers) before it
// allocates more, so generations run slower rather than fail; memory the
// machine does not have still fails (ErrBackend). A CPU prompt's prefill
// bounds it further while it runs and puts this one back. 0 is refused
// (ErrBadInput).
func SetMemoryLimit(bytes uint64) (previous uint64, err error) {
	var prev C.uint64_t
	err = call(func() C.gomlx_status { return C.gomlx_set_memory_limit(C.uint64_t(bytes), &prev) })
	return uint64(prev), err
}

// SetCacheLimit sets how many bytes of freed buffers MLX keeps for reuse
// (MemoryStats.Cache) for the whole process, and returns the limit before:
// above it they go back to the system at the next allocation; 0 keeps
// none (every buffer allocated anew, a little slower).
func SetCacheLimit(bytes uint64) (previous uint64) {
	var prev C.uint64_t
	C.gomlx_set_cache_limit(C.uint64_t(bytes), &prev)
	return uint64(prev)
}

// Version is the version of the C library ("0.1.0").
func Version() string { return C.GoString(C.gomlx_version()) }

// MLXVersion is the version of the MLX library linked in.
func MLXVersion() string { return C.GoString(C.gomlx_mlx_version()) }
