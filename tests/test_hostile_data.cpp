// Hostile data folders and files (issue 16): special files, images that declare huge
// sizes, palette PNGs whose indices run past the palette, symlink loops, a loader whose
// every image is bad, and tensor files holding expanding views. Each must end in a clear
// FileError, quickly, with bounded memory.
#include "test_data_util.h"
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/data/data_loader.h"
#include "idiff/data/image_datasets.h"
#include "idiff/io/tensor_file.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

namespace idiff {
namespace {

using test::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const FileError& e) {
    return e.what();
  }
  return "<no FileError>";
}

#define EXPECT_HAS(text, needle)                               \
  EXPECT_NE(std::string(text).find(needle), std::string::npos) \
      << "missing '" << (needle) << "' in: " << (text)

std::string be32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::string png_chunk(const std::string& type, const std::string& data) {
  const std::string body = type + data;
  const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()));
  return be32(uint32_t(data.size())) + body + be32(crc);
}

// A non-interlaced palette PNG (PNG spec 11.2.2-11.2.4) of w x h pixels at `depth` bits,
// with `entries` palette colours (entry i = (40 i, 255 - 40 i, 7)) and the given indices,
// one per pixel in row order, written with filter 0 (none).
std::string palette_png(int w, int h, int depth, int entries, const std::vector<int>& indices) {
  std::string ihdr = be32(uint32_t(w)) + be32(uint32_t(h));
  ihdr += {char(depth), 3, 0, 0, 0};
  std::string plte;
  for (int i = 0; i < entries; ++i) plte += {char(40 * i), char(255 - 40 * i), 7};
  const int row_bytes = (w * depth + 7) / 8;
  std::string raw;
  for (int y = 0; y < h; ++y) {
    std::string row(size_t(row_bytes), '\0');
    for (int x = 0; x < w; ++x) {
      const int bit = x * depth;
      row[size_t(bit / 8)] = char(uint8_t(row[size_t(bit / 8)]) |
                                  (indices[size_t(y * w + x)] << (8 - depth - bit % 8)));
    }
    raw += '\0' + row;
  }
  uLongf n = compressBound(uLong(raw.size()));
  std::string z(n, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(raw.data()),
           uLong(raw.size()));
  z.resize(n);
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("PLTE", plte) +
         png_chunk("IDAT", z) + png_chunk("IEND", "");
}

// A w x h PNG of `color` type (0 grey, 2 RGB, 4 grey + alpha, 6 RGBA) at `depth` bits whose
// rows are `raw` (filter bytes included), deflated with `extra` zero bytes after them in the
// same stream.
std::string raw_png(int w, int h, int depth, int color, const std::string& raw, size_t extra = 0) {
  std::string ihdr = be32(uint32_t(w)) + be32(uint32_t(h));
  ihdr += {char(depth), char(color), 0, 0, 0};
  z_stream z{};
  deflateInit(&z, 9);
  std::string out;
  const std::string zeros(1 << 20, '\0');
  const auto feed = [&](const std::string& in, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = uInt(in.size());
    do {
      char buf[1 << 16];
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof(buf);
      deflate(&z, flush);
      out.append(buf, sizeof(buf) - z.avail_out);
    } while (z.avail_out == 0);
  };
  feed(raw, Z_NO_FLUSH);
  for (size_t done = 0; done < extra; done += zeros.size()) feed(zeros, Z_NO_FLUSH);
  feed("", Z_FINISH);
  deflateEnd(&z);
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", out) +
         png_chunk("IEND", "");
}

// The resident-set high-water mark of this process, in bytes.
int64_t peak_rss() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;
}

TEST(HostileData, AZlibBombInAPngIsNeverInflatedPastTheImage) {
  // 32x32 RGB whose zlib stream goes on for 256 MiB of zeros after the last row (about
  // 250 KB on disk): stb_image inflated all of it; the image needs 3 KiB.
  std::string raw;
  for (int y = 0; y < 32; ++y) {
    raw += '\0';
    for (int x = 0; x < 32 * 3; ++x) raw += char(x + y);
  }
  const std::string bomb = raw_png(32, 32, 8, 2, raw, size_t(256) << 20);
  ASSERT_LT(bomb.size(), 1u << 20);
  const int64_t before = peak_rss();
  const auto start = std::chrono::steady_clock::now();
  const Image8 im = decode_image_bytes({bomb.begin(), bomb.end()}, "bomb.png");
  EXPECT_LT(peak_rss() - before, int64_t(32) << 20);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
  ASSERT_EQ(im.channels, 3);
  EXPECT_EQ(im.pixels[size_t(5 * 96 + 7)], uint8_t(7 + 5));  // row 5, byte 7: x + y
}

TEST(HostileData, APngIsDecodedAsStbImageDidAndABadCrcIsRefused) {
  TempDir d;
  // 8-bit images of 1 to 4 channels: the pixels written.
  for (int c = 1; c <= 4; ++c) {
    const Image8 img = test::pattern_image(5, 3, c);
    test::write_png(d.file("p.png"), img);
    const Image8 im = decode_image_file(d.file("p.png"));
    ASSERT_EQ(im.channels, c);
    EXPECT_EQ(im.pixels, img.pixels) << c;
  }
  // 16-bit grey: the high byte of each sample (as stb_image and Pillow read it).
  std::string raw;
  for (int y = 0; y < 2; ++y) raw += std::string(1, '\0') + "\x12\x34\xab\xcd\xff\x01";
  const std::string png16 = raw_png(3, 2, 16, 0, raw);
  const Image8 im = decode_image_bytes({png16.begin(), png16.end()}, "png16");
  EXPECT_EQ(im.pixels, (std::vector<uint8_t>{0x12, 0xab, 0xff, 0x12, 0xab, 0xff}));
  // A chunk whose CRC is wrong (Pillow refuses it; stb_image did not check).
  std::string bad = read_all(d.file("p.png"));
  const size_t idat = bad.find("IDAT");
  const uint32_t len = (uint8_t(bad[idat - 4]) << 24) | (uint8_t(bad[idat - 3]) << 16) |
                       (uint8_t(bad[idat - 2]) << 8) | uint8_t(bad[idat - 1]);
  bad[idat + 4 + len] = char(bad[idat + 4 + len] ^ 0x55);
  test::write_bytes(d.file("crc.png"), bad);
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("crc.png")); }),
             "cannot decode image " + d.file("crc.png") + ": IDAT: CRC error");
}

TEST(HostileData, SpecialFilesAreRefusedWithoutBlocking) {
  TempDir d;
  ASSERT_EQ(::mkfifo(d.file("fifo.png").c_str(), 0644), 0);
  ASSERT_EQ(::symlink("/dev/zero", d.file("zero.png").c_str()), 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("fifo.png")); }),
             "is not a regular file (it is a FIFO)");
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("zero.png")); }),
             "(it is a character device)");
  EXPECT_HAS(message_of([&] { load_tensor_file(d.file("fifo.png")); }), "it is a FIFO");
  EXPECT_HAS(message_of([&] { load_tensor_file(d.file("zero.png")); }), "character device");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
  // The size limit of a regular file says what it is.
  test::write_bytes(d.file("big.bin"), std::string(100, 'x'));
  EXPECT_HAS(message_of([&] { read_regular_file(d.file("big.bin"), 99, "image"); }),
             "holds 100 bytes, more than the limit of 99 bytes");
  EXPECT_EQ(read_regular_file(d.file("big.bin"), 100, "image").size(), 100u);
  // A folder of them: every image bad, which --skip_bad_images cannot help.
  ImageFolderDataset ds(d.path(), 8);
  ASSERT_EQ(ds.size(), 2);
  std::vector<float> out(3 * 8 * 8);
  EXPECT_HAS(message_of([&] { ds.read(0, out.data()); }), "FIFO");
}

TEST(HostileData, ImagesAboveThePixelLimitAreRefusedBeforeDecoding) {
  TempDir d;
  test::write_png(d.file("small.png"), test::pattern_image(32, 32, 3));
  EXPECT_EQ(decode_image_file(d.file("small.png")).width, 32);
  EXPECT_HAS(
      message_of([&] { decode_image_file(d.file("small.png"), 1023); }),
      "is 32x32 (1024 pixels), more than the limit of 1023 pixels (`max_image_pixels` raises it)");
  EXPECT_EQ(decode_image_file(d.file("small.png"), 1024).height, 32);
  // Commands without the flag (sample's --init_image, eval) say what to do instead.
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("small.png"), 1023, "resize it first"); }),
             "more than the limit of 1023 pixels (resize it first)");
  // A header that declares 20000 x 20000 over a few hundred bytes of data: refused from
  // the header (IHDR's width and height at bytes 16..23), with the default limit.
  // (Grey: stb_image itself refuses RGB images above 2^30 bytes, but not this one.)
  test::write_png(d.file("grey.png"), test::pattern_image(32, 32, 1));
  std::string bytes = read_all(d.file("grey.png"));
  bytes.replace(16, 8, be32(20000) + be32(20000));
  test::write_bytes(d.file("bomb.png"), bytes);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("bomb.png")); }),
             "is 20000x20000 (400000000 pixels), more than the limit of 178956970 pixels");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 1.0);
}

TEST(HostileData, PalettePngIndicesMustNameEntries) {
  TempDir d;
  // In range: the decoded colours are the palette's (an independent expectation).
  const std::vector<int> good = {0, 1, 2, 1, 2, 0, 0, 2, 1};
  test::write_bytes(d.file("good.png"), palette_png(3, 3, 8, 3, good));
  const Image8 im = decode_image_file(d.file("good.png"));
  ASSERT_EQ(im.channels, 3);
  for (int p = 0; p < 9; ++p) {
    const int i = good[size_t(p)];
    EXPECT_EQ(im.pixels[size_t(3 * p)], uint8_t(40 * i));
    EXPECT_EQ(im.pixels[size_t(3 * p + 1)], uint8_t(255 - 40 * i));
    EXPECT_EQ(im.pixels[size_t(3 * p + 2)], 7);
  }
  // Index 5 of a 3-colour palette: stb_image would read uninitialised memory.
  std::vector<int> bad = good;
  bad[4] = 5;
  test::write_bytes(d.file("bad8.png"), palette_png(3, 3, 8, 3, bad));
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("bad8.png")); }),
             "palette index 5 is past the palette's 3 entries");
  // Packed 4-bit indices, odd width (the padding bits of a row do not count).
  test::write_bytes(d.file("good4.png"), palette_png(3, 2, 4, 2, {0, 1, 0, 1, 1, 0}));
  EXPECT_EQ(decode_image_file(d.file("good4.png")).width, 3);
  test::write_bytes(d.file("bad4.png"), palette_png(3, 2, 4, 2, {0, 1, 0, 1, 9, 0}));
  EXPECT_HAS(message_of([&] { decode_image_file(d.file("bad4.png")); }), "palette index 9");
}

TEST(HostileData, EachFolderIsListedOnceWhateverLinksLeadToIt) {
  TempDir d;
  std::filesystem::create_directories(d.file("a/b"));
  test::write_png(d.file("a/b/x_1.png"), test::pattern_image(4, 4, 3));
  ASSERT_EQ(::symlink("..", d.file("a/b/up").c_str()), 0);  // a loop
  ASSERT_EQ(::symlink("a", d.file("again").c_str()), 0);    // a second way in
  const std::vector<std::string> files = list_image_files_recursively(d.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], d.file("a/b/x_1.png"));
}

// A dataset whose every item is bad, read by several workers: the error comes (it used to
// spin forever once other threads had found the last good item bad).
TEST(HostileData, EveryItemBadWithWorkersEndsInTheError) {
  for (int64_t workers : {0, 1, 3}) {
    auto ds = std::make_shared<test::FakeDataset>(6, 2, std::set<int64_t>{0, 1, 2, 3, 4, 5});
    LoaderOptions o;
    o.batch_size = 4;
    o.num_workers = workers;
    o.skip_bad_images = true;
    DataLoader loader(ds, o);
    EXPECT_HAS(message_of([&] { loader.next(); }), "every one of the 6 images")
        << workers << " workers";
  }
}

// A dataset whose reads block until released: next() ends its wait when asked to stop.
class BlockingDataset : public test::FakeDataset {
 public:
  BlockingDataset() : FakeDataset(4) {}
  int64_t read(int64_t index, float* out) const override {
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [this] { return released_; });
    return FakeDataset::read(index, out);
  }
  void release() {
    {
      std::lock_guard<std::mutex> lk(m_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool released_ = false;
};

TEST(HostileData, LoaderWaitEndsOnAStopRequest) {
  auto ds = std::make_shared<BlockingDataset>();
  std::atomic<bool> stop{false};
  LoaderOptions o;
  o.batch_size = 2;
  o.num_workers = 1;
  o.interrupted = [&stop] { return stop.load(); };
  {
    DataLoader loader(ds, o);
    std::thread stopper([&stop] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      stop = true;
    });
    const auto start = std::chrono::steady_clock::now();
    bool interrupted = false;
    try {
      loader.next();
    } catch (const Interrupted&) {
      interrupted = true;
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stopper.join();
    EXPECT_TRUE(interrupted);
    EXPECT_GT(waited, 0.25);  // it did wait for the data first
    EXPECT_LT(waited, 5.0);
    ds->release();  // lets the worker finish its batch, so the loader can join it
  }
}

}  // namespace
}  // namespace idiff
