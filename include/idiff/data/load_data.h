// The reference's load_data (improved_diffusion/image_datasets.py) for idiff: one struct
// of data settings -> an endless loader of batches. --data_dir may name an image folder,
// a folder of IDX files, an IDX images file, or "fashion-mnist" (see open_dataset).
#pragma once

#include "idiff/config.h"
#include "idiff/data/data_loader.h"
#include "idiff/data/dataset.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace idiff {

struct DataConfig {
  std::string data_dir;          // --data_dir
  int64_t batch_size = 1;        // --batch_size (per process, as the reference)
  int64_t image_size = 64;       // --image_size
  bool class_cond = false;       // --class_cond: batches carry labels
  bool deterministic = false;    // no shuffling: items in order (the reference's nll/eval use)
  bool skip_bad_images = false;  // --skip_bad_images: skip and count unreadable images
  int64_t num_workers = 2;       // decoding threads (0: decode on the caller's thread)
  uint64_t seed = 0;             // shuffling seed
  int64_t rank = 0;              // this process; it reads items [rank::world_size]
  int64_t world_size = 1;
  int64_t start_batch = 0;  // resuming at step k: start with batch k of this plan
  int64_t max_image_pixels = kDefaultMaxImagePixels;  // --max_image_pixels
  std::function<bool()> interrupted;                  // LoaderOptions::interrupted (a stop request)
  int64_t image_channels = 3;                         // LoaderOptions::channels
};

// The dataset --data_dir names, at image_size x image_size:
//  - "fashion-mnist" (unless a file or folder of that name exists): the train split of
//    Debian's dataset-fashion-mnist package (an error asks to install it when absent);
//  - a folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] (the
//    train split of MNIST-like IDX data), or an IDX images file (any split);
//  - otherwise an image folder: .jpg/.jpeg/.png/.gif files, recursively.
// An empty --data_dir is a ConfigError; a missing folder, a folder without images and
// bad IDX files are FileErrors.
std::shared_ptr<Dataset> open_dataset(const std::string& data_dir, int64_t image_size,
                                      int64_t max_image_pixels = kDefaultMaxImagePixels);

// open_dataset + a DataLoader with the config's options.
std::unique_ptr<DataLoader> load_data(const DataConfig& config);

}  // namespace idiff
