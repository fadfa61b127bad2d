#pragma once
// CONVPOOL_CLONES compiles a function once per x86-64 vector level (AVX-512, AVX2+FMA, baseline)
// and picks the clone for the running CPU at load time (GCC target_clones): the extension is built
// without -march flags, and the machines it runs on differ (AMD Zen 4, Intel with AMX, ...).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CONVPOOL_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CONVPOOL_CLONES
#endif

#include <atomic>

namespace convpool {

// Whether the CPU has AVX-512's 32 registers of 64 bytes. Kernels written over GCC generic
// vectors pick their vector width B (bytes) with it inside each clone: 64 where it is true, else
// 32. In the AVX2 clone a 64-byte generic vector is no register type, and GCC keeps every one on
// the stack (2-7x slower). Register blocking follows B too: 32 registers with AVX-512, 16 without.
//
// Tests (torch_convpool.testing.vector_width(256)) clear g_wide_vectors_allowed to run those
// AVX2 shapes on an AVX-512 machine: their lane orders and blocking are otherwise only ever
// checked on the CPUs that lack AVX-512.
inline std::atomic<bool> g_wide_vectors_allowed{true};

inline bool wide_vector_registers() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool wide = __builtin_cpu_supports("avx512f");
  return wide && g_wide_vectors_allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

}  // namespace convpool
