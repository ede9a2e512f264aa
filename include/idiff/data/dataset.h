// The dataset interface of idiff's data layer: an indexed, read-only collection of
// images already transformed to the model's resolution (the role of the reference's
// ImageDataset in improved_diffusion/image_datasets.py). Implementations: image folders
// (image_datasets.h) and IDX files such as Fashion-MNIST (idx_dataset.h). Sharding,
// shuffling and batching are the DataLoader's (data_loader.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// One item: image [3, R, R] float32 in [-1, 1]; label -1 when the dataset has none.
struct Example {
  at::Tensor image;
  int64_t label = -1;
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  // Number of items (the whole dataset, before sharding).
  virtual int64_t size() const = 0;
  // The side R of the square images read() produces.
  virtual int64_t resolution() const = 0;

  // Writes item `index` (0 <= index < size()) to `out` as float32 CHW [3, R, R] in
  // [-1, 1] and returns its label (-1 without labels). Must be safe to call from several
  // threads at once. An unreadable or corrupt item throws FileError naming its file.
  virtual int64_t read(int64_t index, float* out) const = 0;

  // Class labels: whether items have them, and their names (index = label).
  virtual bool has_labels() const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;
  int64_t num_classes() const { return int64_t(class_names().size()); }

  // What item `index` is, for messages: its file (and position within it).
  virtual std::string describe(int64_t index) const = 0;
  // One line about the whole dataset: where it is, how many items, what kind.
  virtual std::string summary() const = 0;

  // read() into a fresh tensor.
  Example get(int64_t index) const;
};

}  // namespace idiff
