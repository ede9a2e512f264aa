// The DataLoader (see data_loader.h): a sequential plan of batches, a bounded window of
// batches decoded ahead by worker threads, handed out in plan order.
#include "idiff/data/data_loader.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <chrono>
#include <iostream>
#include <limits>
#include <numeric>

namespace idiff {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) {
  return splitmix64(a ^ splitmix64(b));
}

// Uniform in [0, n) by rejection (std::uniform_int_distribution's algorithm is
// implementation-defined; this one is the same everywhere).
uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

// Random draws before a bad item's replacement is searched for linearly.
constexpr int64_t kRandomReplacementTries = 1000;

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  TORCH_CHECK(dataset_, "DataLoader: no dataset");
  const LoaderOptions& o = options_;
  IDIFF_REQUIRE(o.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                o.batch_size);
  IDIFF_REQUIRE(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, ConfigError, "rank ",
                o.rank, " is outside the world size ", o.world_size);
  IDIFF_REQUIRE(o.num_workers >= 0, ConfigError, "`num_workers` must be 0 or more, got ",
                o.num_workers);
  IDIFF_REQUIRE(o.prefetch >= 0, ConfigError, "the prefetch depth must be 0 or more, got ",
                o.prefetch);
  IDIFF_REQUIRE(
      !o.with_labels || dataset_->has_labels(), ConfigError,
      "`class_cond` True needs class labels, but the data has none: ", dataset_->summary());
  const int64_t n = dataset_->size();
  IDIFF_REQUIRE(n >= o.world_size, ConfigError, "the data has ", n, " items, fewer than the ",
                o.world_size, " processes that share it: ", dataset_->summary());
  for (int64_t i = o.rank; i < n; i += o.world_size) shard_.push_back(i);
  IDIFF_REQUIRE(o.start_batch >= 0, ConfigError, "the first batch must be 0 or more, got ",
                o.start_batch);
  if (options_.prefetch == 0) options_.prefetch = 2 * std::max<int64_t>(o.num_workers, 1);
  if (o.start_batch > 0) skip_to(o.start_batch);
  for (int64_t w = 0; w < o.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

int64_t DataLoader::batches_per_epoch() const {
  return std::max<int64_t>(1, shard_size() / options_.batch_size);
}

int64_t DataLoader::skipped_images() const {
  std::lock_guard<std::mutex> lk(bad_mutex_);
  return int64_t(bad_.size());
}

void DataLoader::start_epoch() {
  ++epoch_;
  order_.resize(shard_.size());
  std::iota(order_.begin(), order_.end(), int64_t(0));
  if (options_.shuffle) {
    std::mt19937_64 rng(mix(options_.seed, uint64_t(epoch_)));
    for (size_t i = order_.size() - 1; i > 0; --i)
      std::swap(order_[i], order_[draw_below(rng, i + 1)]);
  }
  cursor_ = 0;
}

void DataLoader::skip_to(int64_t k) {
  // Where plan_next_batch() would be after k batches: with a full shard, batch k is
  // batch k % per_epoch of epoch k / per_epoch; with a short one, the batches are a
  // stream through the epochs and batch k starts at item k * batch_size of it.
  const int64_t n = shard_size(), b = options_.batch_size;
  const int64_t epoch = n >= b ? k / (n / b) : k * b / n;
  const int64_t cursor = n >= b ? (k % (n / b)) * b : k * b % n;
  epoch_ = epoch - 1;
  start_epoch();
  cursor_ = size_t(cursor);
  planned_ = consumed_ = k;
}

std::vector<int64_t> DataLoader::plan_next_batch() {
  const size_t b = size_t(options_.batch_size);
  if (epoch_ < 0) start_epoch();
  // drop_last: a full shard's leftover items are dropped; a shard smaller than a batch
  // runs on into the next epochs.
  if (shard_.size() >= b && order_.size() - cursor_ < b) start_epoch();
  std::vector<int64_t> items;
  items.reserve(b);
  while (items.size() < b) {
    if (cursor_ == order_.size()) start_epoch();
    items.push_back(shard_[size_t(order_[cursor_++])]);
  }
  ++planned_;
  return items;
}

bool DataLoader::is_bad(int64_t item) const {
  std::lock_guard<std::mutex> lk(bad_mutex_);
  return bad_.count(item) != 0;
}

void DataLoader::note_bad(int64_t item, const std::string& why) {
  std::lock_guard<std::mutex> lk(bad_mutex_);
  if (bad_.insert(item).second) {
    last_bad_why_ = why;
    std::cerr << "idiff: warning: skipping a bad image (" << bad_.size() << " so far): " << why
              << std::endl;
  }
  require_a_good_item();
}

void DataLoader::require_a_good_item() const {
  IDIFF_REQUIRE(
      bad_.size() < shard_.size(), FileError, "every one of the ", shard_.size(),
      " images of this process's share of the data is unreadable; the last: ", last_bad_why_);
}

int64_t DataLoader::read_item(int64_t k, int64_t slot, int64_t item, float* out) {
  if (!options_.skip_bad_images) {
    try {
      return dataset_->read(item, out);
    } catch (const FileError& e) {
      throw FileError(str(e.what(), " (`skip_bad_images` True skips such images)"));
    }
  }
  if (!is_bad(item)) {
    try {
      return dataset_->read(item, out);
    } catch (const FileError& e) {
      note_bad(item, e.what());
    }
  }
  // A replacement depends on (seed, batch, slot) and on which items are bad, never on
  // which thread found them bad first.
  std::mt19937_64 rng(mix(mix(options_.seed, uint64_t(k)), uint64_t(slot)));
  const uint64_t n = shard_.size();
  const uint64_t start = draw_below(rng, n);
  for (int64_t attempt = 0;; ++attempt) {
    const uint64_t pos =
        attempt < kRandomReplacementTries ? draw_below(rng, n) : (start + attempt) % n;
    const int64_t candidate = shard_[pos];
    if (is_bad(candidate)) {
      // Another thread may have found the last good item bad: stop searching then.
      std::lock_guard<std::mutex> lk(bad_mutex_);
      require_a_good_item();
      continue;
    }
    try {
      return dataset_->read(candidate, out);
    } catch (const FileError& e) {
      note_bad(candidate, e.what());  // throws once every item is bad
    }
  }
}

DataLoader::Slot DataLoader::decode(int64_t k, const std::vector<int64_t>& items) {
  Slot s;
  try {
    const int64_t n = int64_t(items.size()), r = dataset_->resolution();
    s.batch.images = at::empty({n, 3, r, r}, at::kFloat);  // [N, 3, R, R]
    if (options_.with_labels) s.batch.labels = at::empty({n}, at::kLong);
    float* images = s.batch.images.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t label = read_item(k, i, items[size_t(i)], images + i * 3 * r * r);
      if (options_.with_labels) s.batch.labels.data_ptr<int64_t>()[i] = label;
    }
  } catch (...) {
    s.error = std::current_exception();
  }
  return s;
}

void DataLoader::worker_loop() {
  std::unique_lock<std::mutex> lk(mutex_);
  for (;;) {
    work_cv_.wait(lk, [this] { return stop_ || planned_ < consumed_ + options_.prefetch; });
    if (stop_) return;
    const int64_t k = planned_;
    std::vector<int64_t> items;
    Slot s;
    try {
      items = plan_next_batch();
    } catch (...) {  // a worker thread must not end in an exception (std::terminate)
      s.error = std::current_exception();
      ++planned_;
    }
    lk.unlock();
    if (!s.error) s = decode(k, items);
    lk.lock();
    ready_.emplace(k, std::move(s));
    ready_cv_.notify_all();
  }
}

at::Tensor rgb_to_grey(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "rgb_to_grey expects [N, 3, H, W], got ",
              images.sizes());
  const at::Tensor weights =
      at::tensor({0.299f, 0.587f, 0.114f}, images.options()).view({1, 3, 1, 1});
  return (images * weights).sum(1, /*keepdim=*/true).contiguous();
}

Batch DataLoader::next() {
  Slot s;
  if (workers_.empty()) {
    std::vector<int64_t> items;
    int64_t k;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      k = planned_;
      items = plan_next_batch();
      ++consumed_;
    }
    s = decode(k, items);
  } else {
    std::unique_lock<std::mutex> lk(mutex_);
    const auto ready = [this] { return ready_.count(consumed_) != 0; };
    while (!ready_cv_.wait_for(lk, std::chrono::milliseconds(100), ready)) {
      if (options_.interrupted && options_.interrupted()) {
        throw Interrupted("stopped while waiting for the data loader");
      }
    }
    auto node = ready_.extract(consumed_);
    s = std::move(node.mapped());
    ++consumed_;
    lk.unlock();
    work_cv_.notify_all();
  }
  if (s.error) std::rethrow_exception(s.error);
  if (options_.channels == 1) s.batch.images = rgb_to_grey(s.batch.images);
  return std::move(s.batch);
}

}  // namespace idiff
