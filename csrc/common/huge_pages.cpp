#include "huge_pages.h"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace convpool {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
// Below this a tensor spans too few huge pages to matter.
constexpr int64_t kMinBytes = int64_t{8} << 20;

}  // namespace

const at::Tensor& prefer_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!t.defined() || !t.is_cpu() || t.nbytes() < static_cast<size_t>(kMinBytes)) return t;
  const auto begin = reinterpret_cast<uintptr_t>(t.storage().data());
  const uintptr_t end = begin + t.storage().nbytes();
  // Only whole huge pages inside the allocation; a failure (THP off) is harmless.
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = end & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  return t;
}

}  // namespace convpool
