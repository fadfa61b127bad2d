#include "cuda_emulation.h"

#include <atomic>

namespace convpool {
namespace {
// Process-wide, not thread-local: autograd may run a backward on another thread than the
// forward, and both must take the same backend.
std::atomic<bool> g_emulation{false};
}  // namespace

void set_cuda_emulation(bool on) { g_emulation = on; }
bool cuda_emulation() { return g_emulation; }

}  // namespace convpool
