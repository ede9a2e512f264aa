// Zip archives through libzip, for torch.save files and npz: reading records with size
// limits (hostile archives cannot make us allocate more than they plausibly hold) and
// writing stored records whose data starts at an aligned file offset, as torch.save's own
// writer does so that a loader may map storages in place.
#pragma once

#include "idiff/io/raw_tensor.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

struct zip;
struct zip_file;
struct zip_source;

namespace idiff {

// One record read front to back without holding it whole (large npz arrays). The
// ZipReader it came from must outlive it.
class ZipRecordStream {
 public:
  ZipRecordStream(ZipRecordStream&& other) noexcept;
  ZipRecordStream& operator=(ZipRecordStream&&) = delete;
  ~ZipRecordStream();
  uint64_t size() const { return size_; }
  uint64_t position() const { return position_; }
  // Exactly n bytes; FileError when the record ends early or is corrupt (the CRC is
  // checked when the last byte has been read).
  void read(void* out, uint64_t n);

 private:
  friend class ZipReader;
  ZipRecordStream(::zip_file* file, std::string what, uint64_t size)
      : file_(file), what_(std::move(what)), size_(size) {}
  ::zip_file* file_ = nullptr;
  std::string what_;
  uint64_t size_ = 0, position_ = 0;
};

class ZipReader {
 public:
  static ZipReader open_file(const std::string& path);
  // `data` must outlive the reader; `what` names it in messages.
  static ZipReader open_memory(const uint8_t* data, size_t size, const std::string& what);
  ZipReader(ZipReader&& other) noexcept;
  ZipReader& operator=(ZipReader&&) = delete;
  ~ZipReader();

  const std::string& what() const { return what_; }
  const std::vector<std::string>& names() const { return names_; }  // in directory order
  bool contains(const std::string& name) const;
  uint64_t size_of(const std::string& name) const;

  // The record's bytes. FileError when it is absent, larger than `max_bytes`, compressed
  // with a method other than store/deflate, or fails its CRC.
  std::shared_ptr<RawStorage> read(const std::string& name, uint64_t max_bytes) const;
  std::string read_string(const std::string& name, uint64_t max_bytes) const;
  // The record as a stream (same checks as read(), without the size limit).
  ZipRecordStream open_stream(const std::string& name) const;

 private:
  ZipReader(::zip* archive, std::string what, uint64_t archive_size);
  int64_t index_of(const std::string& name) const;
  // Checks the record's directory entry (method, plausible sizes); its size and index.
  uint64_t checked_record(const std::string& name, int64_t* index) const;

  ::zip* archive_ = nullptr;
  std::string what_;
  uint64_t archive_size_ = 0;
  std::vector<std::string> names_;
};

class ZipWriter {
 public:
  // Creates (or truncates) the archive at `path`; nothing is final before close().
  explicit ZipWriter(const std::string& path);
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;
  ~ZipWriter();  // discards an archive that was not closed

  // Adds an uncompressed record whose data starts at a multiple of `alignment` (padding
  // goes into an extra field of the local header, id "FB" like PyTorch's writer).
  // `data` must stay valid until close(); add_copy keeps its own copy.
  void add(const std::string& name, const void* data, size_t size, size_t alignment = 64);
  void add_copy(const std::string& name, std::string bytes, size_t alignment = 64);
  // A record made of two parts back to back (an npy header and the array's bytes);
  // `head` is copied, `data` must stay valid until close().
  void add_two_parts(const std::string& name, std::string head, const void* data, size_t size,
                     size_t alignment = 64);
  void close();

 private:
  void add_source(const std::string& name, ::zip_source* src, uint64_t size, size_t alignment);

  ::zip* archive_ = nullptr;
  std::string path_;
  uint64_t offset_ = 0;  // where the next local header will start
  std::deque<std::string> copies_;
};

}  // namespace idiff
