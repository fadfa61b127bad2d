#pragma once
// Scratch memory a thread keeps from call to call. The kernels' per-call buffers (column blocks,
// Winograd tiles, staged channel blocks) are megabytes: allocated and freed on every call, glibc
// hands them back to the kernel and every call faults its pages in and zero-fills them again
// (7 % of a C512 7x7 Winograd forward; in whole models the faults also land on the next op:
// mobilenet_v3_large channels_last inference ran 0.81-0.87x torch with per-call buffers, 0.92 with
// malloc told never to trim).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>

namespace convpool {

// Slots a kernel may hold at once; buffers live at the same time on one thread need distinct
// slots (a kernel's own, not those of kernels it calls: those run after it has finished, or
// take their own scratch elsewhere).
constexpr int kScratchSlots = 4;
// Above this a request gets memory of its own, freed with the ThreadScratch: a thread does not
// keep a huge image's staging for the rest of the process.
constexpr int64_t kKeptScratchBytes = int64_t{64} << 20;

// n uninitialised elements of T: the calling thread's buffer `slot`, grown as needed, or
// memory of its own above kKeptScratchBytes.
template <typename T>
class ThreadScratch {
 public:
  ThreadScratch(int slot, int64_t n) {
    const int64_t bytes = std::max<int64_t>(n, 1) * static_cast<int64_t>(sizeof(T));
    if (bytes > kKeptScratchBytes) {
      own_ = allocate(bytes);
      data_ = reinterpret_cast<T*>(own_.get());
      return;
    }
    thread_local Kept kept[kScratchSlots];
    Kept& k = kept[slot];
    if (k.bytes < bytes) {
      k.data.reset();  // the old buffer first: never both at once
      k.data = allocate(bytes);
      k.bytes = bytes;
    }
    data_ = reinterpret_cast<T*>(k.data.get());
  }
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;

  T* data() const { return data_; }
  T& operator[](int64_t i) const { return data_[i]; }

 private:
  // 64-byte aligned: the kernels' vector loads and stores never split a cache line.
  static constexpr std::align_val_t kAlignment{64};
  struct Free {
    void operator()(char* p) const { ::operator delete[](p, kAlignment); }
  };
  using Memory = std::unique_ptr<char[], Free>;
  static Memory allocate(int64_t bytes) {
    return Memory(static_cast<char*>(::operator new[](bytes, kAlignment)));
  }
  struct Kept {
    Memory data;
    int64_t bytes = 0;
  };
  Memory own_;
  T* data_;
};

}  // namespace convpool
