// load_data: --data_dir -> dataset -> DataLoader (see load_data.h).
#include "idiff/data/load_data.h"

#include "idiff/common/error.h"
#include "idiff/data/idx_dataset.h"
#include "idiff/data/image_datasets.h"

namespace idiff {

std::shared_ptr<Dataset> open_dataset(const std::string& data_dir, int64_t image_size,
                                      int64_t max_image_pixels) {
  IDIFF_REQUIRE(!data_dir.empty(), ConfigError,
                "`data_dir` is required: an image folder, IDX files or fashion-mnist");
  IDIFF_REQUIRE(image_size > 0, ConfigError, "`image_size` must be positive, got ", image_size);
  const std::string idx_images = find_idx_images(data_dir);
  if (!idx_images.empty()) {
    return std::make_shared<IdxDataset>(idx_images, idx_labels_path(idx_images), image_size);
  }
  return std::make_shared<ImageFolderDataset>(data_dir, image_size, max_image_pixels);
}

std::unique_ptr<DataLoader> load_data(const DataConfig& config) {
  LoaderOptions o;
  o.batch_size = config.batch_size;
  o.shuffle = !config.deterministic;
  o.with_labels = config.class_cond;
  o.skip_bad_images = config.skip_bad_images;
  o.num_workers = config.num_workers;
  o.seed = config.seed;
  o.rank = config.rank;
  o.world_size = config.world_size;
  o.start_batch = config.start_batch;
  o.interrupted = config.interrupted;
  o.channels = config.image_channels;
  IDIFF_REQUIRE(config.image_channels == 1 || config.image_channels == 3, ConfigError,
                "`image_channels` must be 1 (grey) or 3 (RGB), got ", config.image_channels);
  IDIFF_REQUIRE(config.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                config.batch_size);
  return std::make_unique<DataLoader>(
      open_dataset(config.data_dir, config.image_size, config.max_image_pixels), o);
}

}  // namespace idiff
