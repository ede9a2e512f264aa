// Folders of image files, as the reference's load_data / ImageDataset
// (improved_diffusion/image_datasets.py): every .jpg/.jpeg/.png/.gif under the folder,
// recursively, in the reference's order; class labels from the file-name prefix before
// the first underscore; each image decoded with stb_image and transformed exactly as the
// reference does with PIL (image_resize.h).
#pragma once

#include "idiff/config.h"
#include "idiff/data/dataset.h"
#include "idiff/data/image_resize.h"

#include <string>
#include <vector>

namespace idiff {

// The reference's _list_image_files_recursively: the entries of each folder in sorted
// (byte) order; a name with a jpg/jpeg/png/gif extension (any case) that is not a folder
// is an image, a folder is descended into (each folder once, however many symlinks lead
// to it). A missing or unreadable folder is a FileError.
std::vector<std::string> list_image_files_recursively(const std::string& data_dir);

// Class name of an image file: its file name up to the first underscore (the whole name
// when there is none), as the reference's `basename(path).split("_")[0]`.
std::string class_name_of(const std::string& path);

// Decodes an image file with stb_image into its own channels (1 grey, 2 grey + alpha,
// 3 RGB, 4 RGBA; palette images become RGB(A), GIFs give their first frame, 16-bit PNGs
// are reduced to 8 bits). An unreadable file or one stb_image cannot decode is a
// FileError naming the file and stb_image's reason; so are a special file (FIFO, device),
// a file above kMaxImageFileBytes, an image declaring more than `max_pixels` pixels
// (checked before decoding) and a palette PNG whose indices run past its palette.
// `raise_hint`: how the user raises `max_pixels` (the commands without the flag say what
// to do instead).
Image8 decode_image_file(const std::string& path, int64_t max_pixels = kDefaultMaxImagePixels,
                         const std::string& raise_hint = "`max_image_pixels` raises it");

// The same for an image held in memory (a server's upload); `what` names it in errors.
Image8 decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& what,
                          int64_t max_pixels = kDefaultMaxImagePixels,
                          const std::string& raise_hint = "`max_image_pixels` raises it");

class ImageFolderDataset : public Dataset {
 public:
  // Lists the images under data_dir (FileError when there are none). Labels are always
  // derived from the names; whether batches carry them is the loader's choice.
  ImageFolderDataset(std::string data_dir, int64_t resolution,
                     int64_t max_pixels = kDefaultMaxImagePixels);

  int64_t size() const override { return int64_t(files_.size()); }
  int64_t resolution() const override { return resolution_; }
  int64_t read(int64_t index, float* out) const override;
  bool has_labels() const override { return true; }
  const std::vector<std::string>& class_names() const override { return class_names_; }
  std::string describe(int64_t index) const override;
  std::string summary() const override;

  const std::vector<int64_t>& labels() const { return labels_; }

 private:
  std::string data_dir_;
  int64_t resolution_;
  int64_t max_pixels_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
};

}  // namespace idiff
