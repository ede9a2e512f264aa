// The data layer: image folders (listing order, labels from names, decoding, bad files),
// the loader (epochs are shuffled permutations, drop_last, sharding, determinism across
// runs and thread counts, bad items failing or skipped and counted) and IDX files
// (plain and gzipped, padding, bad headers, the Fashion-MNIST package).
#include "test_data_util.h"
#include "test_util.h"

#include "idiff/data/data_loader.h"
#include "idiff/data/idx_dataset.h"
#include "idiff/data/image_datasets.h"
#include "idiff/data/load_data.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace idiff {
namespace {

using test::FakeDataset;
using test::TempDir;

// The item indices of a FakeDataset batch (each image is its index everywhere).
std::vector<int64_t> items_of(const Batch& b) {
  std::vector<int64_t> out;
  const at::Tensor first = b.images.index({at::indexing::Slice(), 0, 0, 0});
  for (int64_t i = 0; i < b.images.size(0); ++i) out.push_back(int64_t(first[i].item<float>()));
  return out;
}

std::vector<int64_t> take(DataLoader& loader, int batches) {
  std::vector<int64_t> out;
  for (int i = 0; i < batches; ++i) {
    const auto items = items_of(loader.next());
    out.insert(out.end(), items.begin(), items.end());
  }
  return out;
}

using test::error_of;

#define EXPECT_ERROR(ErrorType, stmt, needle)                                       \
  do {                                                                              \
    try {                                                                           \
      stmt;                                                                         \
      ADD_FAILURE() << "no " #ErrorType " from " #stmt;                             \
    } catch (const ErrorType& e) {                                                  \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what(); \
    }                                                                               \
  } while (0)

// ---- image folders -----------------------------------------------------------------------

TEST(DataFolder, ListsImagesRecursivelyInTheReferencesOrder) {
  TempDir d;
  fs::create_directories(d.file("a/deeper"));
  fs::create_directories(d.file("a-c"));
  fs::create_directories(d.file("dir.png"));  // a folder, even with an image's name
  const Image8 im = test::pattern_image(4, 4, 3);
  for (const char* name : {"b_1.png", "a_2.JPG", "a/c_3.jpeg", "a/deeper/z.Gif", "a-c/x.png",
                           "dir.png/y.png", "B_0.PNG"}) {
    test::write_png(d.file(name), im);  // the extension alone decides, as in the reference
  }
  test::write_bytes(d.file("notes.txt"), "x");
  test::write_bytes(d.file("png"), "x");  // no dot: not an image
  std::vector<std::string> rel;
  for (const std::string& f : list_image_files_recursively(d.path()))
    rel.push_back(f.substr(d.path().size() + 1));
  // Each folder's entries sorted by name, folders descended in place: "a" < "a-c" <
  // "a_2.JPG" ("-" < "_"), and "a/..." before "a-c" unlike a sort of whole paths.
  EXPECT_EQ(rel, (std::vector<std::string>{"B_0.PNG", "a/c_3.jpeg", "a/deeper/z.Gif", "a-c/x.png",
                                           "a_2.JPG", "b_1.png", "dir.png/y.png"}));
}

TEST(DataFolder, ClassLabelsFromTheNamePrefix) {
  TempDir d;
  const Image8 im = test::pattern_image(8, 8, 3);
  for (const char* name : {"dog_2.png", "cat_1.png", "cat_3_x.png", "bird.png", "dog_0.png"}) {
    test::write_png(d.file(name), im);
  }
  const ImageFolderDataset ds(d.path(), 8);
  // Sorted unique names -> indices; "bird.png" has no underscore, so its name is whole.
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"bird.png", "cat", "dog"}));
  // Files: bird.png, cat_1, cat_3_x, dog_0, dog_2.
  EXPECT_EQ(ds.labels(), (std::vector<int64_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(ds.get(3).label, 2);
}

TEST(DataFolder, DecodesPngAndJpegOfAnySize) {
  TempDir d;
  // Non-square, smaller than the target, larger than twice it, grey, grey + alpha, RGBA.
  test::write_png(d.file("a.png"), test::pattern_image(50, 23, 3));
  test::write_png(d.file("b.png"), test::pattern_image(7, 12, 1));
  test::write_png(d.file("c.png"), test::pattern_image(130, 70, 2));
  test::write_png(d.file("d.png"), test::pattern_image(33, 33, 4));
  Image8 flat(40, 30, 3);
  for (size_t p = 0; p < flat.pixels.size(); p += 3)
    flat.pixels[p] = 200, flat.pixels[p + 1] = 100, flat.pixels[p + 2] = 20;
  test::write_jpg(d.file("e.jpg"), flat, 100);
  const ImageFolderDataset ds(d.path(), 16);
  ASSERT_EQ(ds.size(), 5);
  for (int64_t i = 0; i < ds.size(); ++i) {
    const Example ex = ds.get(i);
    ASSERT_EQ(ex.image.sizes(), (at::IntArrayRef{3, 16, 16}));
    EXPECT_GE(ex.image.min().item<float>(), -1.0f);
    EXPECT_LE(ex.image.max().item<float>(), 1.0f);
  }
  // A flat JPEG stays flat within JPEG's error, channel by channel.
  const at::Tensor jpg = ds.get(4).image;
  const float want[3] = {200 / 127.5f - 1, 100 / 127.5f - 1, 20 / 127.5f - 1};
  for (int c = 0; c < 3; ++c)
    EXPECT_LT((jpg[c] - want[c]).abs().max().item<float>(), 3 / 127.5f) << "channel " << c;
}

TEST(DataFolder, CorruptImagesAreErrorsNamingTheFile) {
  TempDir d;
  test::write_png(d.file("good.png"), test::pattern_image(8, 8, 3));
  test::write_bytes(d.file("garbage.png"), "this is not a png at all");
  // A PNG cut in half.
  test::write_png(d.file("tmp.png"), test::pattern_image(64, 64, 3, 5));
  std::string png;
  {
    std::ifstream in(d.file("tmp.png"), std::ios::binary);
    png.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  fs::remove(d.file("tmp.png"));
  test::write_bytes(d.file("truncated.png"), png.substr(0, png.size() / 2));
  test::write_bytes(d.file("empty.jpg"), "");
  const ImageFolderDataset ds(d.path(), 8);
  ASSERT_EQ(ds.size(), 4);  // empty.jpg, garbage.png, good.png, truncated.png
  std::vector<float> out(3 * 8 * 8);
  EXPECT_ERROR(FileError, ds.read(0, out.data()), d.file("empty.jpg"));
  EXPECT_ERROR(FileError, ds.read(1, out.data()), d.file("garbage.png"));
  EXPECT_NO_THROW(ds.read(2, out.data()));
  EXPECT_ERROR(FileError, ds.read(3, out.data()), d.file("truncated.png"));
}

TEST(DataFolder, MissingEmptyOrUnnamedFoldersAreErrors) {
  TempDir d;
  EXPECT_ERROR(FileError, ImageFolderDataset(d.path(), 8), "holds no images");
  test::write_bytes(d.file("readme.txt"), "no images here");
  EXPECT_ERROR(FileError, open_dataset(d.path(), 8), "holds no images");
  EXPECT_ERROR(FileError, open_dataset(d.file("nope"), 8), "does not exist");
  EXPECT_ERROR(ConfigError, open_dataset("", 8), "`data_dir`");
  test::write_png(d.file("x.png"), test::pattern_image(4, 4, 3));
  EXPECT_ERROR(ConfigError, open_dataset(d.path(), 0), "`image_size`");
}

TEST(DataFolder, LoadDataGivesBatchesWithLabels) {
  TempDir d;
  for (int i = 0; i < 6; ++i) {
    test::write_png(d.file(str(i % 2 ? "odd" : "even", "_", i, ".png")),
                    test::pattern_image(20 + i, 30 - i, 3, i));
  }
  DataConfig cfg;
  cfg.data_dir = d.path();
  cfg.batch_size = 4;
  cfg.image_size = 8;
  cfg.class_cond = true;
  auto loader = load_data(cfg);
  EXPECT_EQ(loader->dataset().num_classes(), 2);
  for (int i = 0; i < 3; ++i) {
    const Batch b = loader->next();
    ASSERT_EQ(b.images.sizes(), (at::IntArrayRef{4, 3, 8, 8}));
    EXPECT_EQ(b.images.scalar_type(), at::kFloat);
    ASSERT_TRUE(b.labels.defined());
    EXPECT_EQ(b.labels.scalar_type(), at::kLong);
    EXPECT_EQ(b.labels.sizes(), (at::IntArrayRef{4}));
    EXPECT_TRUE(b.labels.ge(0).all().item<bool>() && b.labels.le(1).all().item<bool>());
  }
  cfg.class_cond = false;
  EXPECT_FALSE(load_data(cfg)->next().labels.defined());
}

// ---- the loader --------------------------------------------------------------------------

LoaderOptions opts(int64_t batch, uint64_t seed = 7, int64_t workers = 2) {
  LoaderOptions o;
  o.batch_size = batch;
  o.seed = seed;
  o.num_workers = workers;
  return o;
}

TEST(DataLoader, EpochsAreShuffledPermutationsWithDropLast) {
  auto ds = std::make_shared<FakeDataset>(10);
  DataLoader loader(ds, opts(3));
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 4; ++e) epochs.push_back(take(loader, 3));
  for (const auto& ep : epochs) {
    ASSERT_EQ(ep.size(), 9u);  // one item left over, dropped
    EXPECT_EQ(std::set<int64_t>(ep.begin(), ep.end()).size(), 9u)
        << "an item repeated within an epoch";
    for (int64_t i : ep) EXPECT_TRUE(i >= 0 && i < 10);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int64_t> sorted0 = epochs[0];
  std::sort(sorted0.begin(), sorted0.end());
  EXPECT_NE(sorted0, epochs[0]) << "not shuffled";
}

TEST(DataLoader, SameSeedSameBatchesWhateverTheThreads) {
  auto ds = std::make_shared<FakeDataset>(37);
  std::vector<int64_t> reference;
  {
    DataLoader l(ds, opts(5, 42, 0));
    reference = take(l, 20);  // nearly three epochs
  }
  for (int64_t workers : {1, 3, 8}) {
    DataLoader l(ds, opts(5, 42, workers));
    EXPECT_EQ(take(l, 20), reference) << workers << " workers";
  }
  DataLoader other(ds, opts(5, 43, 2));
  EXPECT_NE(take(other, 20), reference);
}

TEST(DataLoader, TwoRanksPartitionTheData) {
  auto ds = std::make_shared<FakeDataset>(11);
  std::vector<std::set<int64_t>> seen(2);
  for (int64_t rank : {0, 1}) {
    LoaderOptions o = opts(1, 3);
    o.rank = rank;
    o.world_size = 2;
    DataLoader l(ds, o);
    EXPECT_EQ(l.shard_size(), rank == 0 ? 6 : 5);
    for (int64_t i : take(l, int(l.shard_size()))) seen[rank].insert(i);
    EXPECT_EQ(int64_t(seen[rank].size()), l.shard_size());  // one epoch covers the shard
    for (int64_t i : seen[rank]) EXPECT_EQ(i % 2, rank) << "items [rank::world_size]";
  }
  std::set<int64_t> all = seen[0];
  all.insert(seen[1].begin(), seen[1].end());
  EXPECT_EQ(all.size(), 11u);
}

TEST(DataLoader, DeterministicModeIsInOrder) {
  auto ds = std::make_shared<FakeDataset>(7);
  LoaderOptions o = opts(2);
  o.shuffle = false;
  DataLoader l(ds, o);
  // 3 batches per epoch, item 6 dropped, then the next epoch in order again.
  EXPECT_EQ(take(l, 4), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 0, 1}));
  LoaderOptions r1 = o;
  r1.rank = 1;
  r1.world_size = 2;
  DataLoader l1(ds, r1);
  EXPECT_EQ(take(l1, 2),
            (std::vector<int64_t>{1, 3, 1, 3}));  // shard {1, 3, 5}: 1 batch, 5 dropped
}

TEST(DataLoader, FewerItemsThanABatchRunOnIntoTheNextEpochs) {
  auto ds = std::make_shared<FakeDataset>(3);
  DataLoader l(ds, opts(8));
  const std::vector<int64_t> items = take(l, 3);  // 24 items = 8 epochs of 3
  ASSERT_EQ(items.size(), 24u);
  for (size_t e = 0; e < 8; ++e) {
    EXPECT_EQ(std::set<int64_t>(items.begin() + 3 * e, items.begin() + 3 * e + 3),
              (std::set<int64_t>{0, 1, 2}));
  }
}

TEST(DataLoader, StartBatchContinuesThePlan) {
  // Full shards (drop_last, 10 // 3 = 3 batches per epoch) and a shard shorter than a
  // batch, shuffled or not: batches k.. of a fresh loader.
  for (auto [n, batch] : {std::pair<int64_t, int64_t>{10, 3}, {3, 8}}) {
    for (bool shuffle : {true, false}) {
      auto ds = std::make_shared<FakeDataset>(n);
      LoaderOptions o = opts(batch, 11, 1);
      o.shuffle = shuffle;
      DataLoader fresh(ds, o);
      const std::vector<int64_t> all = take(fresh, 12);
      for (int64_t k : {1, 3, 5, 7}) {
        o.start_batch = k;
        DataLoader resumed(ds, o);
        EXPECT_EQ(take(resumed, int(12 - k)),
                  std::vector<int64_t>(all.begin() + k * batch, all.end()))
            << n << " items, batch " << batch << ", start " << k << (shuffle ? ", shuffled" : "");
      }
    }
  }
}

TEST(DataLoader, LabelsOnlyWhenAskedAndAvailable) {
  auto ds = std::make_shared<FakeDataset>(6);
  LoaderOptions o = opts(6);
  o.shuffle = false;
  o.with_labels = true;
  DataLoader l(ds, o);
  const Batch b = l.next();
  ASSERT_TRUE(b.labels.defined());
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(b.labels[i].item<int64_t>(), i % 3);
  ds->labelled_ = false;
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "`class_cond`");
}

TEST(DataLoader, BadOptionsAreErrors) {
  auto ds = std::make_shared<FakeDataset>(3);
  LoaderOptions o = opts(0);
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "`batch_size`");
  o = opts(1);
  o.rank = 2;
  o.world_size = 2;
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "rank 2");
  o.rank = 0;
  o.world_size = 4;
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "fewer than the 4 processes");
  o = opts(1, 0, -1);
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "`num_workers`");
  o = opts(1);
  o.start_batch = -1;
  EXPECT_ERROR(ConfigError, DataLoader(ds, o), "first batch");
}

TEST(DataLoader, BadItemsFailWithTheirName) {
  auto ds = std::make_shared<FakeDataset>(10, 2, std::set<int64_t>{4});
  LoaderOptions o = opts(5);
  o.shuffle = false;
  DataLoader l(ds, o);
  EXPECT_ERROR(FileError, l.next(),
               "fake4.png: corrupt (`skip_bad_images` True skips such images)");
  EXPECT_EQ(take(l, 1), (std::vector<int64_t>{5, 6, 7, 8, 9}));  // the loader goes on
}

TEST(DataLoader, SkippedBadItemsAreCountedAndDeterministic) {
  const std::set<int64_t> bad = {2, 5, 11, 12};
  auto ds = std::make_shared<FakeDataset>(20, 2, bad);
  std::vector<int64_t> reference;
  for (int64_t workers : {0, 3}) {
    LoaderOptions o = opts(4, 9, workers);
    o.skip_bad_images = true;
    DataLoader l(ds, o);
    const std::vector<int64_t> items = take(l, 15);  // three epochs: every bad item met
    for (int64_t i : items) EXPECT_EQ(bad.count(i), 0u) << "bad item " << i << " in a batch";
    EXPECT_EQ(l.skipped_images(), 4);
    if (reference.empty()) reference = items;
    EXPECT_EQ(items, reference) << workers << " workers";
  }
  // Every item bad: an error, not an endless search.
  auto all_bad = std::make_shared<FakeDataset>(3, 2, std::set<int64_t>{0, 1, 2});
  LoaderOptions o = opts(2, 1, 0);
  o.skip_bad_images = true;
  DataLoader l(all_bad, o);
  EXPECT_ERROR(FileError, l.next(), "every one of the 3 images");
}

TEST(DataLoader, SkipsCorruptFilesOfAFolder) {
  TempDir d;
  for (int i = 0; i < 5; ++i)
    test::write_png(d.file(str("img_", i, ".png")), test::pattern_image(12, 12, 3, i));
  test::write_bytes(d.file("img_bad.png"), "\x89PNG broken");
  DataConfig cfg;
  cfg.data_dir = d.path();
  cfg.batch_size = 6;
  cfg.image_size = 8;
  cfg.deterministic = true;
  EXPECT_ERROR(FileError, load_data(cfg)->next(), "img_bad.png");
  cfg.skip_bad_images = true;
  auto loader = load_data(cfg);
  const Batch b = loader->next();
  EXPECT_EQ(b.images.size(0), 6);
  EXPECT_EQ(loader->skipped_images(), 1);
}

// ---- IDX files ---------------------------------------------------------------------------

std::vector<uint8_t> idx_pixels(int n, int rows, int cols) {
  std::vector<uint8_t> px(size_t(n) * rows * cols);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 37 + 11) % 256);
  return px;
}

TEST(DataIdx, ReadsPlainAndGzippedFiles) {
  for (bool gz : {false, true}) {
    TempDir d;
    const auto px = idx_pixels(5, 6, 4);
    const std::string images = test::idx_bytes({5, 6, 4}, px),
                      labels = test::idx_bytes({5}, {3, 0, 1, 3, 2});
    if (gz) {
      test::write_gz(d.file("train-images-idx3-ubyte.gz"), images);
      test::write_gz(d.file("train-labels-idx1-ubyte.gz"), labels);
    } else {
      test::write_bytes(d.file("train-images-idx3-ubyte"), images);
      test::write_bytes(d.file("train-labels-idx1-ubyte"), labels);
    }
    // A t10k split beside it is not used: the folder means the train split.
    test::write_bytes(d.file("t10k-images-idx3-ubyte"),
                      test::idx_bytes({1, 6, 4}, idx_pixels(1, 6, 4)));
    const auto ds = open_dataset(d.path(), 4);  // 4x6 -> short side 4: a copy, then the crop
    ASSERT_NE(dynamic_cast<const IdxDataset*>(ds.get()), nullptr);
    ASSERT_EQ(ds->size(), 5);
    EXPECT_EQ(ds->num_classes(), 4);
    const Example ex = ds->get(3);
    EXPECT_EQ(ex.label, 3);
    // Rows 1..4 of the 6 (the centre crop), every channel the grey value.
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) {
          const float want = float(px[size_t(3) * 24 + (y + 1) * 4 + x]) / 127.5f - 1.0f;
          ASSERT_EQ(ex.image[c][y][x].item<float>(), want)
              << (gz ? "gz " : "plain ") << c << " " << y << " " << x;
        }
  }
}

TEST(DataIdx, TwentyEightArePaddedToThirtyTwo) {
  TempDir d;
  const auto px = idx_pixels(2, 28, 28);
  test::write_bytes(d.file("t10k-images-idx3-ubyte"), test::idx_bytes({2, 28, 28}, px));
  test::write_gz(d.file("t10k-labels-idx1-ubyte.gz"), test::idx_bytes({2}, {1, 0}));
  // An images file named directly (here the t10k split); its labels found beside it.
  const auto ds = open_dataset(d.file("t10k-images-idx3-ubyte"), 32);
  const at::Tensor im = ds->get(1).image;
  ASSERT_EQ(im.sizes(), (at::IntArrayRef{3, 32, 32}));
  const at::Tensor want = at::from_blob(const_cast<uint8_t*>(px.data()) + 784, {28, 28}, at::kByte)
                              .to(at::kFloat)
                              .div(127.5f)
                              .sub(1.0f);
  using at::indexing::Slice;
  for (int c = 0; c < 3; ++c) EXPECT_TRUE(im[c].index({Slice(2, 30), Slice(2, 30)}).equal(want));
  EXPECT_EQ(im.index({Slice(), Slice(0, 2)}).max().item<float>(), -1.0f);
  EXPECT_EQ(im.index({Slice(), Slice(), Slice(30, 32)}).max().item<float>(), -1.0f);
  // Other sizes are resized: 28 -> 16.
  EXPECT_EQ(open_dataset(d.file("t10k-images-idx3-ubyte"), 16)->get(0).image.sizes(),
            (at::IntArrayRef{3, 16, 16}));
}

TEST(DataIdx, BadFilesAreErrorsNamingTheFile) {
  TempDir d;
  const std::string f = d.file("x-images-idx3-ubyte");
  auto expect_bad = [&](const std::string& bytes, int ndims, const std::string& needle) {
    test::write_bytes(f, bytes);
    const std::string e = error_of([&] { read_idx_file(f, ndims); });
    EXPECT_NE(e.find(f), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << e;
  };
  const auto px = idx_pixels(2, 3, 3);
  expect_bad("\x12\x34\x08\x03", 3, "bad magic number");
  expect_bad(test::idx_bytes({2, 3, 3}, px, 0x0d), 3, "element type 0xd");
  expect_bad(test::idx_bytes({2, 3, 3}, px), 1, "has 3 dimensions, expected 1");
  expect_bad(test::idx_bytes({2, 3, 3}, std::vector<uint8_t>(px.begin(), px.end() - 1)), 3,
             "truncated");
  auto longer = px;
  longer.push_back(0);
  expect_bad(test::idx_bytes({2, 3, 3}, longer), 3, "data after");
  expect_bad(test::idx_bytes({2, 0, 3}, {}), 3, "empty dimension");
  expect_bad(std::string("\0\0", 2), 3, "too short");
  // A corrupt gzip stream.
  test::write_gz(f + ".gz", test::idx_bytes({2, 3, 3}, px));
  std::string gz;
  {
    std::ifstream in(f + ".gz", std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  expect_bad(gz.substr(0, gz.size() - 12), 3, "IDX file");

  // Counts disagreeing between images and labels; a missing labels file.
  TempDir m;
  test::write_bytes(m.file("train-images-idx3-ubyte"), test::idx_bytes({2, 3, 3}, px));
  EXPECT_ERROR(FileError, open_dataset(m.path(), 3), "no labels file");
  test::write_bytes(m.file("train-labels-idx1-ubyte"), test::idx_bytes({3}, {0, 1, 2}));
  EXPECT_ERROR(FileError, open_dataset(m.path(), 3), "holds 2 images but");
}

TEST(DataIdx, FashionMnistFromTheDebianPackage) {
  // dataset-fashion-mnist is installed by build.sh (and so in CI).
  const auto ds = open_dataset("fashion-mnist", 32);
  const auto* idx = dynamic_cast<const IdxDataset*>(ds.get());
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->size(), 60000);
  EXPECT_EQ(idx->image_height(), 28);
  EXPECT_EQ(idx->image_width(), 28);
  EXPECT_EQ(idx->num_classes(), 10);
  std::vector<int64_t> per_class(10);
  for (uint8_t l : idx->labels()) ++per_class[l];
  EXPECT_EQ(per_class, std::vector<int64_t>(10, 6000));
  const Example ex = ds->get(0);
  EXPECT_EQ(ex.label, 9);  // the first training image is an ankle boot
  EXPECT_GT(ex.image.max().item<float>(), 0.5f);
  EXPECT_EQ(ex.image.min().item<float>(), -1.0f);
  // Where the package is missing, the error says how to install it.
  EXPECT_ERROR(FileError, find_fashion_mnist_images("/nonexistent/list", "/nonexistent/dir"),
               "apt-get install dataset-fashion-mnist");
}

}  // namespace
}  // namespace idiff
