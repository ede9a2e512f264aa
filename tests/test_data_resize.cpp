// The image transform against Pillow: the reference's ImageDataset pipeline (box halvings,
// bicubic, centre crop, [-1, 1]) on images written as PNGs and decoded with stb_image,
// compared bit for bit with Pillow's output in tests/data/data_resize_pil.safetensors
// (made by tests/py/make_data_resize_fixture.py); and analytic properties of the filters.
#include "test_data_util.h"
#include "test_util.h"

#include "idiff/data/image_datasets.h"
#include "idiff/data/image_resize.h"

#include <ATen/ATen.h>

#include <cstring>

namespace idiff {
namespace {

Image8 image_from_tensor(const at::Tensor& t) {  // uint8 [H, W, C]
  Image8 im(int(t.size(1)), int(t.size(0)), int(t.size(2)));
  std::memcpy(im.pixels.data(), t.contiguous().data_ptr<uint8_t>(), im.pixels.size());
  return im;
}

TEST(DataResize, MatchesPillowBitForBit) {
  const TensorMap fx = test::load_fixture("data_resize_pil.safetensors");
  int cases = 0;
  for (int i = 0; fx.contains(str("case", i, ".input")); ++i, ++cases) {
    const Image8 input = image_from_tensor(fx.at(str("case", i, ".input")));
    const int64_t res = fx.at(str("case", i, ".resolution")).item<int64_t>();
    const at::Tensor expected = fx.at(str("case", i, ".output"));  // uint8 [3, R, R]
    // Through a PNG file and the dataset, as training reads it.
    test::TempDir dir;
    test::write_png(dir.file(str("case", i, ".png")), input);
    const ImageFolderDataset ds(dir.path(), res);
    const Example ex = ds.get(0);
    const at::Tensor want = expected.to(at::kFloat) / 127.5f - 1.0f;
    ASSERT_EQ(ex.image.sizes(), want.sizes()) << "case " << i;
    EXPECT_EQ((ex.image - want).abs().max().item<float>(), 0.0f)
        << "case " << i << " (" << input.width << "x" << input.height << "x" << input.channels
        << " -> " << res << "): " << (ex.image - want).abs().gt(0).sum().item<int64_t>()
        << " values differ";
  }
  EXPECT_EQ(cases, 10);
}

TEST(DataResize, ConstantImagesStayConstant) {
  for (int c : {1, 2, 3, 4}) {
    Image8 im(37, 23, c);
    for (size_t p = 0; p < im.pixels.size(); ++p)
      im.pixels[p] = uint8_t(p % c == size_t(c - 1) && c % 2 == 0 ? 200 : 77);
    for (auto [w, h] : {std::pair{18, 11}, {50, 40}, {5, 60}, {1, 1}}) {
      for (ResampleFilter f : {ResampleFilter::Box, ResampleFilter::Bicubic}) {
        const Image8 out = pil_resize(im, w, h, f);
        ASSERT_EQ(out.width, w);
        ASSERT_EQ(out.height, h);
        // With alpha the premultiplied round trip may move the colour by one level
        // (77 * 200 / 255 -> 60 -> 60 * 255 / 200 -> 76), but it stays constant.
        for (size_t p = 0; p < out.pixels.size(); ++p) {
          ASSERT_EQ(out.pixels[p], out.pixels[p % c]) << c << " channels, " << w << "x" << h;
          ASSERT_NEAR(out.pixels[p], im.pixels[p % c], c % 2 == 0 ? 1 : 0)
              << c << " channels, " << w << "x" << h;
        }
      }
    }
  }
}

TEST(DataResize, HorizontalRampStaysMonotone) {
  Image8 ramp(64, 9, 3);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 64; ++x)
      for (int b = 0; b < 3; ++b) ramp.row(y)[x * 3 + b] = uint8_t(x * 4);
  for (int w : {20, 32, 45, 90, 150}) {
    for (ResampleFilter f : {ResampleFilter::Box, ResampleFilter::Bicubic}) {
      const Image8 out = pil_resize(ramp, w, 7, f);
      for (int y = 0; y < 7; ++y)
        for (int x = 1; x < w; ++x)
          ASSERT_LE(out.row(y)[(x - 1) * 3], out.row(y)[x * 3]) << "width " << w;
    }
  }
}

TEST(DataResize, BoxFilterHandComputed) {
  // 2x2 -> 1x1: rows first, each pass rounded to 8 bits: (0 + 255) / 2 -> 128, then
  // (128 + 255) / 2 = 191.5 -> 192 (not 191.25 -> 191 of an exact 4-pixel mean).
  Image8 im(2, 2, 1);
  im.pixels = {0, 255, 255, 255};
  EXPECT_EQ(pil_resize(im, 1, 1, ResampleFilter::Box).pixels[0], 192);
  // 3x1 -> 1x1: one box over all three pixels.
  Image8 row(3, 1, 1);
  row.pixels = {0, 30, 90};
  EXPECT_EQ(pil_resize(row, 1, 1, ResampleFilter::Box).pixels[0], 40);
}

TEST(DataResize, SameSizeIsACopyEvenWithAlpha) {
  // Pillow returns a copy without the premultiplied round trip, which would change
  // colours under small alpha.
  Image8 im = test::pattern_image(6, 4, 4);
  for (size_t p = 3; p < im.pixels.size(); p += 4) im.pixels[p] = 3;
  EXPECT_EQ(pil_resize(im, 6, 4, ResampleFilter::Bicubic).pixels, im.pixels);
}

TEST(DataResize, ReferenceResizeShapesAndCrop) {
  // Non-square, larger than twice the target in both sides: 2 halvings, bicubic, crop.
  const Image8 big = test::pattern_image(150, 97, 3);
  const Image8 out = reference_resize(big, 20);
  EXPECT_EQ(out.width, 20);
  EXPECT_EQ(out.height, 20);
  EXPECT_EQ(out.channels, 3);
  // Grey becomes three equal channels.
  const Image8 grey = reference_resize(test::pattern_image(13, 30, 1), 16);
  for (size_t p = 0; p < grey.pixels.size(); p += 3) {
    ASSERT_EQ(grey.pixels[p], grey.pixels[p + 1]);
    ASSERT_EQ(grey.pixels[p], grey.pixels[p + 2]);
  }
  std::vector<float> chw(3 * 16 * 16);
  rgb_to_chw_float(grey, chw.data());
  for (float v : chw) {
    ASSERT_GE(v, -1.0f);
    ASSERT_LE(v, 1.0f);
  }
}

// A long thin image (200000x1 fits in a 661-byte PNG) would be scaled to a 6.4M-pixel-long
// strip before the crop: refused with the file named, up to 64:1 accepted.
TEST(DataResize, ElongatedImagesAreRefusedBeforeResizing) {
  const std::string err =
      test::error_of([] { reference_resize(Image8(200000, 1, 3), 32, "image strip.png"); });
  EXPECT_NE(err.find("image strip.png is 200000x1: more elongated than 64:1"), std::string::npos)
      << err;
  EXPECT_NE(test::error_of([] { reference_resize(Image8(1, 65, 1), 8); }).find("1x65"),
            std::string::npos);
  const Image8 ok = reference_resize(Image8(64, 1, 3), 8);
  EXPECT_EQ(ok.width, 8);
  EXPECT_EQ(ok.height, 8);
}

}  // namespace
}  // namespace idiff
