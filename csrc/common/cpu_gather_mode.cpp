#include "cpu_gather_mode.h"

#include <atomic>

namespace convpool {
namespace {
std::atomic<bool> g_gather{false};
}  // namespace

void set_cpu_gather_mode(bool gather) { g_gather = gather; }
bool cpu_gather_mode() { return g_gather; }

}  // namespace convpool
