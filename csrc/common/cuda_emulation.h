#pragma once
// CUDA emulation: while it is on (torch_convpool.testing.cuda_emulation()), CPU tensors are
// computed by the CUDA backend's kernel bodies (conv/conv_kernels.h, pool/pool_kernels.h) through
// EmulatedLaunch instead of by the CPU's own kernels, so CPU tests execute the GPU's index math
// and its float16/bfloat16 arithmetic (no float32 upcast of the inputs, float32 accumulation).
#include <ATen/Parallel.h>

#include <cstdint>

namespace convpool {

void set_cuda_emulation(bool on);
bool cuda_emulation();

// A deliberately small grid: 3 blocks of 32 threads. The GPU's grid covers every test tensor in
// one pass; this one makes the grid-stride loop take several passes over any tensor of more than
// 96 elements, so the loop's stepping is exercised too.
constexpr int64_t kEmulatedBlocks = 3;
constexpr int64_t kEmulatedThreadsPerBlock = 32;
constexpr int64_t kParallelFrom = 1 << 16;  // elements

// Runs body(i) for i in [0, n) as CudaLaunch does (cuda_launch.cuh): each (block, thread) pair
// starts at block * threads_per_block + thread and steps by the grid's size. Blocks run in
// parallel, like the GPU's; a body writes only its own element, so the order does not matter.
struct EmulatedLaunch {
  template <typename Body>
  static void run(const Body& body, int64_t n) {
    if (n == 0) return;
    constexpr int64_t grid_threads = kEmulatedBlocks * kEmulatedThreadsPerBlock;
    // Small launches (every test's) run their blocks one after the other on the calling thread:
    // a parallel region per launch costs more than the work, most of all on a loaded machine.
    const int64_t grain = n < kParallelFrom ? kEmulatedBlocks : 1;
    at::parallel_for(0, kEmulatedBlocks, grain, [&](int64_t first_block, int64_t last_block) {
      for (int64_t block = first_block; block < last_block; ++block) {
        for (int64_t thread = 0; thread < kEmulatedThreadsPerBlock; ++thread) {
          for (int64_t i = block * kEmulatedThreadsPerBlock + thread; i < n; i += grid_threads) {
            body(i);
          }
        }
      }
    });
  }
};

}  // namespace convpool
