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
