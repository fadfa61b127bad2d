#pragma once
// Large CPU outputs cost more in first-touch page faults than in the arithmetic that fills them
// (a fresh 100 MB tensor: ~37 ms of faults on 4 KiB pages, ~18 ms on 2 MiB pages, one core).
// Asking the kernel for transparent huge pages on a tensor we are about to write halves that.
// Linux with THP in "madvise" or "always" mode; elsewhere, or for small or non-CPU tensors, it
// does nothing.
#include <ATen/core/Tensor.h>

namespace convpool {

// Advises huge pages for `t`'s storage (call before the first write); returns t.
const at::Tensor& prefer_huge_pages(const at::Tensor& t);

}  // namespace convpool
