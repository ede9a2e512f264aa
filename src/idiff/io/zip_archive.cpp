// libzip wrapper. Writing aligned records with libzip: libzip writes an archive's local
// headers in entry order from offset 0, each 30 bytes + name + the extra fields we set
// (plus a 20-byte Zip64 field when a record reaches 4 GiB), with no data descriptor
// when it writes to a file; so the offset of every record's data is known before
// zip_close, and padding it to the alignment is one extra field per record. The tests
// check the resulting offsets by reading the local headers back.
#include "idiff/io/zip_archive.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"

#include <zip.h>

#include <cstring>
#include <limits>

namespace idiff {
namespace {

constexpr uint16_t kPaddingFieldId = 0x4246;  // "FB", as PyTorch's serializer
// Deflate cannot expand data by more than about 1032:1; a larger declared size is a lie.
constexpr uint64_t kMaxDeflateRatio = 1100;

std::string libzip_error(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

}  // namespace

ZipReader::ZipReader(::zip* archive, std::string what, uint64_t archive_size)
    : archive_(archive), what_(std::move(what)), archive_size_(archive_size) {
  const zip_int64_t n = zip_get_num_entries(archive_, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    names_.emplace_back(name ? name : "");
  }
}

ZipReader::ZipReader(ZipReader&& other) noexcept
    : archive_(other.archive_),
      what_(std::move(other.what_)),
      archive_size_(other.archive_size_),
      names_(std::move(other.names_)) {
  other.archive_ = nullptr;
}

ZipReader::~ZipReader() {
  if (archive_) zip_discard(archive_);
}

ZipReader ZipReader::open_file(const std::string& path) {
  // A FIFO or a device would block or never end.
  const uint64_t size = require_regular_file(path, "file");
  int err = 0;
  ::zip* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  IDIFF_REQUIRE(z != nullptr, FileError, path, ": not a readable zip archive (", libzip_error(err),
                ")");
  return ZipReader(z, path, size);
}

ZipReader ZipReader::open_memory(const uint8_t* data, size_t size, const std::string& what) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(data, size, 0, &error);
  IDIFF_REQUIRE(src != nullptr, FileError, what, ": ", zip_error_strerror(&error));
  ::zip* z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (z == nullptr) {
    zip_source_free(src);
    const std::string msg = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw FileError(str(what, ": not a readable zip archive (", msg, ")"));
  }
  zip_error_fini(&error);
  return ZipReader(z, what, size);
}

int64_t ZipReader::index_of(const std::string& name) const {
  return zip_name_locate(archive_, name.c_str(), ZIP_FL_ENC_RAW);
}

bool ZipReader::contains(const std::string& name) const {
  return index_of(name) >= 0;
}

uint64_t ZipReader::size_of(const std::string& name) const {
  zip_stat_t st;
  const int64_t i = index_of(name);
  IDIFF_REQUIRE(i >= 0 && zip_stat_index(archive_, static_cast<zip_uint64_t>(i), 0, &st) == 0 &&
                    (st.valid & ZIP_STAT_SIZE),
                FileError, what_, ": no record '", name, "'");
  return st.size;
}

uint64_t ZipReader::checked_record(const std::string& name, int64_t* index) const {
  const int64_t i = index_of(name);
  IDIFF_REQUIRE(i >= 0, FileError, what_, ": no record '", name, "'");
  zip_stat_t st;
  IDIFF_REQUIRE(zip_stat_index(archive_, static_cast<zip_uint64_t>(i), 0, &st) == 0 &&
                    (st.valid & ZIP_STAT_SIZE) && (st.valid & ZIP_STAT_COMP_SIZE) &&
                    (st.valid & ZIP_STAT_COMP_METHOD),
                FileError, what_, ": cannot read the directory entry of '", name, "'");
  IDIFF_REQUIRE(st.comp_method == ZIP_CM_STORE || st.comp_method == ZIP_CM_DEFLATE, FileError,
                what_, ": record '", name, "' uses compression method ", st.comp_method,
                " (only stored or deflated records are read)");
  IDIFF_REQUIRE(st.comp_size <= archive_size_, FileError, what_, ": record '", name, "' claims ",
                st.comp_size, " bytes in an archive of ", archive_size_);
  const uint64_t plausible =
      st.comp_method == ZIP_CM_STORE ? st.comp_size : st.comp_size * kMaxDeflateRatio + 1024;
  IDIFF_REQUIRE(st.size <= plausible, FileError, what_, ": record '", name, "' claims ", st.size,
                " bytes but holds ", st.comp_size, " (corrupt or hostile archive)");
  *index = i;
  return st.size;
}

ZipRecordStream ZipReader::open_stream(const std::string& name) const {
  int64_t i = 0;
  const uint64_t size = checked_record(name, &i);
  zip_file_t* f = zip_fopen_index(archive_, static_cast<zip_uint64_t>(i), 0);
  IDIFF_REQUIRE(f != nullptr, FileError, what_, ": cannot open record '", name, "' (",
                zip_strerror(archive_), ")");
  return ZipRecordStream(f, str(what_, ":", name), size);
}

ZipRecordStream::ZipRecordStream(ZipRecordStream&& other) noexcept
    : file_(other.file_),
      what_(std::move(other.what_)),
      size_(other.size_),
      position_(other.position_) {
  other.file_ = nullptr;
}

ZipRecordStream::~ZipRecordStream() {
  if (file_ != nullptr) zip_fclose(file_);
}

void ZipRecordStream::read(void* out, uint64_t n) {
  IDIFF_REQUIRE(n <= size_ - position_, FileError, what_, ": record ends after ", size_, " bytes, ",
                position_ + n, " needed");
  auto* dst = static_cast<uint8_t*>(out);
  uint64_t got = 0;
  while (got < n) {
    const zip_int64_t r = zip_fread(file_, dst + got, n - got);
    IDIFF_REQUIRE(r > 0, FileError, what_, ": record is corrupt (",
                  r < 0 ? std::string(zip_file_strerror(file_))
                        : str("ends after ", position_ + got, " of ", size_, " bytes"),
                  ")");
    got += static_cast<uint64_t>(r);
  }
  position_ += n;
  if (position_ == size_) {
    // One more read reaches the end of the record, where libzip checks the CRC.
    uint8_t extra;
    const zip_int64_t r = zip_fread(file_, &extra, 1);
    IDIFF_REQUIRE(r == 0, FileError, what_, ": record is corrupt (",
                  r < 0 ? std::string(zip_file_strerror(file_))
                        : std::string("longer than its directory entry says"),
                  ")");
  }
}

std::shared_ptr<RawStorage> ZipReader::read(const std::string& name, uint64_t max_bytes) const {
  int64_t i = 0;
  zip_stat_t st;
  st.size = checked_record(name, &i);
  IDIFF_REQUIRE(st.size <= max_bytes, FileError, what_, ": record '", name, "' holds ", st.size,
                " bytes, more than the ", max_bytes, " expected");
  IDIFF_REQUIRE(st.size <= std::numeric_limits<size_t>::max() / 2, FileError, what_, ": record '",
                name, "' is too large");

  auto out = RawStorage::allocate(static_cast<size_t>(st.size));
  zip_file_t* f = zip_fopen_index(archive_, static_cast<zip_uint64_t>(i), 0);
  IDIFF_REQUIRE(f != nullptr, FileError, what_, ": cannot open record '", name, "' (",
                zip_strerror(archive_), ")");
  uint64_t got = 0;
  std::string problem;
  while (got < st.size) {
    const zip_int64_t r = zip_fread(f, out->mutable_data() + got, st.size - got);
    if (r < 0) {
      problem = zip_file_strerror(f);
      break;
    }
    if (r == 0) {
      problem = str("ends after ", got, " of ", st.size, " bytes");
      break;
    }
    got += static_cast<uint64_t>(r);
  }
  if (problem.empty()) {
    // One more read reaches the end of the record, where libzip checks the CRC.
    uint8_t extra;
    const zip_int64_t r = zip_fread(f, &extra, 1);
    if (r < 0)
      problem = zip_file_strerror(f);
    else if (r > 0)
      problem = "is longer than its directory entry says";
  }
  zip_fclose(f);
  IDIFF_REQUIRE(problem.empty(), FileError, what_, ": record '", name, "' is corrupt (", problem,
                ")");
  return out;
}

std::string ZipReader::read_string(const std::string& name, uint64_t max_bytes) const {
  const auto s = read(name, max_bytes);
  return std::string(reinterpret_cast<const char*>(s->data), s->nbytes);
}

ZipWriter::ZipWriter(const std::string& path) : path_(path) {
  int err = 0;
  archive_ = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  IDIFF_REQUIRE(archive_ != nullptr, FileError, path, ": cannot create (", libzip_error(err), ")");
}

ZipWriter::~ZipWriter() {
  if (archive_) zip_discard(archive_);
}

void ZipWriter::add(const std::string& name, const void* data, size_t size, size_t alignment) {
  zip_source_t* src = zip_source_buffer(archive_, data, size, 0);
  IDIFF_REQUIRE(src != nullptr, FileError, path_, ": ", zip_strerror(archive_));
  add_source(name, src, size, alignment);
}

void ZipWriter::add_two_parts(const std::string& name, std::string head, const void* data,
                              size_t size, size_t alignment) {
  copies_.push_back(std::move(head));
  zip_buffer_fragment_t parts[2] = {
      {reinterpret_cast<zip_uint8_t*>(copies_.back().data()), copies_.back().size()},
      {static_cast<zip_uint8_t*>(const_cast<void*>(data)), size}};
  zip_source_t* src = zip_source_buffer_fragment(archive_, parts, size > 0 ? 2 : 1, 0);
  IDIFF_REQUIRE(src != nullptr, FileError, path_, ": ", zip_strerror(archive_));
  add_source(name, src, copies_.back().size() + size, alignment);
}

void ZipWriter::add_source(const std::string& name, zip_source_t* src, uint64_t size,
                           size_t alignment) {
  const zip_int64_t idx = zip_file_add(archive_, name.c_str(), src, ZIP_FL_ENC_UTF_8);
  if (idx < 0) {
    zip_source_free(src);
    throw FileError(str(path_, ": cannot add '", name, "' (", zip_strerror(archive_), ")"));
  }
  const auto i = static_cast<zip_uint64_t>(idx);
  IDIFF_REQUIRE(zip_set_file_compression(archive_, i, ZIP_CM_STORE, 0) == 0, FileError, path_, ": ",
                zip_strerror(archive_));
  // Local header: 30 fixed bytes, the name, our padding field (4 + pad) and, for records
  // of 4 GiB or more, libzip's Zip64 sizes field (4 + 16).
  const uint64_t zip64 = size >= 0xFFFFFFFFull ? 20 : 0;
  const uint64_t data_start = offset_ + 30 + name.size() + 4 + zip64;
  const size_t pad =
      alignment > 1 ? static_cast<size_t>((alignment - data_start % alignment) % alignment) : 0;
  static const std::string kPadding(65535, 'Z');
  IDIFF_REQUIRE(zip_file_extra_field_set(archive_, i, kPaddingFieldId, ZIP_EXTRA_FIELD_NEW,
                                         reinterpret_cast<const zip_uint8_t*>(kPadding.data()),
                                         static_cast<zip_uint16_t>(pad), ZIP_FL_LOCAL) == 0,
                FileError, path_, ": ", zip_strerror(archive_));
  offset_ = data_start + pad + size;
}

void ZipWriter::add_copy(const std::string& name, std::string bytes, size_t alignment) {
  copies_.push_back(std::move(bytes));
  add(name, copies_.back().data(), copies_.back().size(), alignment);
}

void ZipWriter::close() {
  IDIFF_REQUIRE(zip_close(archive_) == 0, FileError, path_, ": cannot write (",
                zip_strerror(archive_), ")");
  archive_ = nullptr;
}

}  // namespace idiff
