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

// Version is the version of the C library ("0.1.0").
func Version() string { return C.GoString(C.gomlx_version()) }

// MLXVersion is the version of the MLX library linked in.
func MLXVersion() string { return C.GoString(C.gomlx_mlx_version()) }
