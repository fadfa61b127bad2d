#pragma once
// Where our ops' large CPU outputs live. A fresh tensor of tens of MB costs more in first-touch
// page faults than the kernel that fills it (38 MB: ~10 ms of faults on 4 KiB pages on two
// threads, where a 1x1 convolution writing it takes ~5 ms), and a training loop frees and asks
// for the same sizes every step. So outputs of 1 MiB and more come from a cache of the blocks our
// earlier outputs left behind, already faulted in, as torch's CUDA caching allocator does for
// device memory. Smaller outputs and non-CPU tensors are plain at::empty.
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>

namespace convpool {

// at::empty(sizes, options), memory format included, for an op's output.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Testing aid (torch_convpool.testing.poison_outputs()): every CPU output starts as all bits
// set (NaN), so a kernel that leaves part of its output unwritten fails its test instead of
// reading whatever a reused block held.
extern std::atomic<bool> g_poison_outputs;

struct OutputCacheInfo {
  int64_t cached_bytes;  // held for reuse, in no tensor
  int64_t limit_bytes;   // the most it may hold; 0: nothing is cached
  int64_t hits;          // outputs served from the cache
  int64_t misses;        // outputs that took fresh memory
};

OutputCacheInfo output_cache_info();
// Frees the least recently cached blocks beyond the new limit; 0 turns caching off.
void set_output_cache_limit(int64_t bytes);
// Returns every cached block to the system (the limit stays).
void release_output_cache();

}  // namespace convpool
