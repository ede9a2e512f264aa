// Batches from a Dataset, endlessly, decoded on background threads: the reference's
// `while True: yield from DataLoader(dataset, batch_size, shuffle=not deterministic,
// drop_last=True)` over the shard `items[rank::world_size]`
// (improved_diffusion/image_datasets.py).
//
// The order of batches is a function of (seed, rank, world_size, batch size) alone, not
// of thread timing: batch k's items are planned in order, workers decode planned batches
// in any order, and next() hands them out in plan order. Epoch e's order is a
// Fisher-Yates shuffle of the shard driven by std::mt19937_64 seeded from (seed, e)
// (both fully specified by the C++ standard, so the order is the same on every platform);
// without shuffling it is the shard in order.
//
// Epochs: as the reference's drop_last, an epoch yields floor(shard / batch) batches
// and its leftover items are dropped (they come up in later epochs' shuffles). A shard
// smaller than one batch cannot fill a batch within one epoch; rather than yield nothing
// forever (what the reference does), batches then run on into the next epochs, so every
// batch is full and items repeat within it.
//
// Bad items (Dataset::read throws FileError): an error, rethrown by next() for the batch
// that holds the item, unless skip_bad_images; then the item is replaced by a good one
// drawn at random from the shard with a generator seeded by (seed, batch, slot) — so the
// batches stay deterministic — a warning is printed to stderr once per bad item, and
// skipped_images() counts the distinct bad items. A shard whose every item is bad is an
// error either way, on every thread that looks for a replacement.
//
// Waits: next() waits for the workers in slices of 100 ms and asks
// LoaderOptions::interrupted between them; when it says yes, next() throws Interrupted
// (a signal arrived while the data was late), so no wait outlasts a stop request.
#pragma once

#include "idiff/data/dataset.h"

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace idiff {

// A batch: images [N, C, R, R] (C = LoaderOptions::channels) float32 in [-1, 1] (CPU, contiguous);
// labels [N] int64, defined only when the loader was asked for labels.
struct Batch {
  at::Tensor images;
  at::Tensor labels;
};

struct LoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = true;       // false: the reference's deterministic=True, items in order
  bool with_labels = false;  // class_cond: batches carry labels (the dataset must have them)
  bool skip_bad_images = false;
  int64_t num_workers = 2;  // decoding threads; 0 decodes in next() on the caller's thread
  int64_t prefetch = 0;     // batches decoded ahead at most; 0: 2 * max(num_workers, 1)
  uint64_t seed = 0;
  int64_t rank = 0;  // this process's shard: items [rank::world_size]
  int64_t world_size = 1;
  // Resuming: the first batch is batch `start_batch` of the plan from 0 (the same items
  // as batch start_batch of a fresh loader), reached without decoding the ones before.
  int64_t start_batch = 0;
  // Polled while next() waits for a batch; true ends the wait with Interrupted. Unset:
  // the wait ends only when the batch (or its error) is ready.
  std::function<bool()> interrupted;
  // 3: the dataset's RGB; 1: grey (rgb_to_grey), for models with --image_channels 1.
  int64_t channels = 3;
};

// [N, 3, H, W] RGB in [-1, 1] -> [N, 1, H, W] grey: ITU-R 601-2 luma (Pillow's
// convert("L") weights, without its rounding to 8 bits). Grey sources (IDX files) give their
// own values back, up to float rounding.
at::Tensor rgb_to_grey(const at::Tensor& images);

class DataLoader {
 public:
  // Checks the options (ConfigError naming the flag) and starts the workers.
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();  // stops and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch; never ends. Rethrows the FileError of a bad item (without skipping).
  Batch next();

  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }
  // Items in this rank's shard, and full batches per epoch (at least 1).
  int64_t shard_size() const { return int64_t(shard_.size()); }
  int64_t batches_per_epoch() const;
  // Distinct bad items skipped so far (skip_bad_images).
  int64_t skipped_images() const;

 private:
  // The dataset indices of batch `k` in plan order, advancing the plan (under mutex_).
  std::vector<int64_t> plan_next_batch();
  void start_epoch();
  void skip_to(int64_t k);  // the plan as after k batches
  // Decodes one planned batch; errors are stored, not thrown.
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  Slot decode(int64_t k, const std::vector<int64_t>& items);
  // read() of one item with the skip_bad_images replacement.
  int64_t read_item(int64_t k, int64_t slot, int64_t item, float* out);
  // Records a bad item (warning, count); throws once every item of the shard is bad.
  void note_bad(int64_t item, const std::string& why);
  bool is_bad(int64_t item) const;
  // Throws the every-item-is-bad FileError when it is so (under bad_mutex_).
  void require_a_good_item() const;
  void worker_loop();

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  std::vector<int64_t> shard_;  // dataset indices of this rank

  // Plan state (mutex_).
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;  // this epoch's order of shard_ positions
  size_t cursor_ = 0;
  int64_t planned_ = 0;   // batches planned so far
  int64_t consumed_ = 0;  // batches handed out by next()
  std::map<int64_t, Slot> ready_;
  bool stop_ = false;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;   // workers wait for room in the prefetch window
  std::condition_variable ready_cv_;  // next() waits for its batch

  mutable std::mutex bad_mutex_;
  std::set<int64_t> bad_;
  std::string last_bad_why_;

  std::vector<std::thread> workers_;
};

}  // namespace idiff
