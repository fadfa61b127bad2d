#include "output_memory.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <vector>

#include <pthread.h>
#include <unistd.h>

namespace convpool {
namespace {

constexpr size_t kMinBytes = size_t{1} << 20;
constexpr size_t kHugePage = size_t{1} << 21;
// From here a block is sized and aligned in whole huge pages, so that where transparent huge
// pages are on ("always") the kernel can back it with them when it has them free. It is not
// asked to (madvise): under the common defrag setting "madvise" that makes a fault compact
// memory first, and a fresh 38 MB output took 39 ms instead of 13.
constexpr size_t kHugeFrom = size_t{8} << 20;
constexpr size_t kSmallGrain = size_t{64} << 10;

size_t rounded(size_t n) {
  const size_t grain = n >= kHugeFrom ? kHugePage : kSmallGrain;
  return (n + grain - 1) / grain * grain;
}

// 1/8 of the machine's memory, at most 2 GiB: the activations of a CNN at the batch sizes a CPU
// trains with. CONVPOOL_OUTPUT_CACHE_MB sets it at start-up.
int64_t default_limit() {
  if (const char* mb = std::getenv("CONVPOOL_OUTPUT_CACHE_MB")) {
    return std::max<int64_t>(std::atoll(mb), 0) << 20;
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  const int64_t physical = pages > 0 && page > 0 ? int64_t{pages} * page : int64_t{8} << 30;
  return std::min<int64_t>(physical / 8, int64_t{2} << 30);
}

struct Block {
  void* data;
  size_t bytes;
  uint64_t freed_at;
};

void release(const std::vector<Block*>& blocks) {
  for (Block* block : blocks) {
    std::free(block->data);
    delete block;
  }
}

class OutputCache final : public c10::Allocator {
 public:
  static OutputCache& instance() {
    // Never destroyed: tensors may be freed after static destruction has begun.
    static auto* cache = [] {
      auto* created = new OutputCache();
      // A fork (a DataLoader worker) while another thread holds the mutex would leave the
      // child's copy locked forever: the fork waits for it instead.
      pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
      return created;
    }();
    return *cache;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinBytes) return c10::GetDefaultCPUAllocator()->allocate(n);
    const size_t bytes = rounded(n);
    Block* block = take(bytes);
    if (block == nullptr) block = fresh(bytes);
    return {block->data, block, &OutputCache::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  OutputCacheInfo info() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_), limit_, hits_, misses_};
  }

  void set_limit(int64_t bytes) {
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = std::max<int64_t>(bytes, 0);
      evict_down_to(static_cast<size_t>(limit_), evicted);
    }
    release(evicted);
  }

  void drop_cached() {
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      evict_down_to(0, evicted);
    }
    release(evicted);
  }

 private:
  OutputCache() : limit_(default_limit()) {}

  // The smallest free block that fits with at most 1/8 to spare; of several that size the most
  // recently freed, whose lines the caches may still hold (the oldest, as the map's order gives
  // them, had gone cold: the next layer read and wrote from memory, and a regnet_y_400mf's
  // grouped convs ran 25-35 % slower in the model than alone).
  Block* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.lower_bound(bytes);
    if (it == free_.end() || it->first > bytes + bytes / 8) {
      ++misses_;
      return nullptr;
    }
    it = std::prev(free_.upper_bound(it->first));  // equal keys keep their insertion order
    Block* block = it->second;
    free_.erase(it);
    cached_ -= block->bytes;
    ++hits_;
    return block;
  }

  Block* fresh(size_t bytes) {
    const size_t alignment = bytes >= kHugeFrom ? kHugePage : 64;
    void* data = nullptr;
    if (posix_memalign(&data, alignment, bytes) != 0) {
      drop_cached();  // what the cache holds is what can be given back
      TORCH_CHECK(posix_memalign(&data, alignment, bytes) == 0,
                  "torch_convpool: out of memory allocating an output of ", bytes, " bytes");
    }
    return new Block{data, bytes, 0};
  }

  static void give_back(void* context) {
    auto* block = static_cast<Block*>(context);
    auto& cache = instance();
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      block->freed_at = ++cache.clock_;
      cache.free_.emplace(block->bytes, block);
      cache.cached_ += block->bytes;
      cache.evict_down_to(static_cast<size_t>(cache.limit_), evicted);
    }
    release(evicted);
  }

  // Least recently freed first; with the mutex held (the memory is freed after, without it).
  void evict_down_to(size_t bytes, std::vector<Block*>& evicted) {
    while (cached_ > bytes) {
      auto oldest = free_.begin();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second->freed_at < oldest->second->freed_at) oldest = it;
      }
      cached_ -= oldest->second->bytes;
      evicted.push_back(oldest->second);
      free_.erase(oldest);
    }
  }

  std::mutex mutex_;
  std::multimap<size_t, Block*> free_;  // by size
  size_t cached_ = 0;
  int64_t limit_;
  uint64_t clock_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace

std::atomic<bool> g_poison_outputs{false};

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (options.device().type() != c10::DeviceType::CPU || options.pinned_memory()) {
    return at::empty(sizes, options);
  }
  auto output = at::detail::empty_generic(
      sizes, &OutputCache::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
      c10::typeMetaToScalarType(options.dtype()), options.memory_format_opt());
  if (g_poison_outputs.load(std::memory_order_relaxed) && output.storage().nbytes() > 0) {
    // All bits set: NaN in every floating type, -1 in the signed ones.
    std::memset(output.storage().mutable_data(), 0xFF, output.storage().nbytes());
  }
  return output;
}

OutputCacheInfo output_cache_info() { return OutputCache::instance().info(); }

void set_output_cache_limit(int64_t bytes) { OutputCache::instance().set_limit(bytes); }

void release_output_cache() { OutputCache::instance().drop_cached(); }

}  // namespace convpool
