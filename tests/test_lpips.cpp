// LPIPS (model/lpips.h) against piq's, as consistency_models builds it, on seeded random
// weights written as a user brings them (tests/py/piq_lpips.py): the distances, their
// gradient, consistency_models' loss_norm lpips (resize to 224 first), bad weight files, and
// `idiff cm-train --loss_norm lpips` training with the files and refusing without them.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/diffusion/consistency_losses.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/lpips.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

TEST(Lpips, EqualsPiqOnRandomWeights) {
  test::TempDir dir;
  const auto r = test::run_python_script("piq_lpips.py", {dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const TensorMap d = read_safetensors(dir.file("lpips.safetensors"));
  const Lpips lpips = Lpips::load(dir.file("vgg16.pth"), dir.file("lpips_weights.pt"));

  const at::Tensor x = d.at("x").clone().requires_grad_(true);
  const at::Tensor got = lpips(x, d.at("y"));
  EXPECT_TRUE(at::allclose(got, d.at("lpips"), 1e-4, 1e-6)) << got << d.at("lpips");
  // The outputs depend on the inputs: the close pair is far nearer than the random one.
  EXPECT_LT(got[1].item<double>(), 0.1 * got[0].item<double>());
  EXPECT_EQ(lpips(d.at("y"), d.at("y")).abs().max().item<double>(), 0.0);
  got.sum().backward();
  const at::Tensor want_grad = d.at("grad_x");
  EXPECT_LT((x.grad() - want_grad).abs().max().item<double>(),
            1e-4 * want_grad.abs().max().item<double>());

  // consistency_models' loss_norm lpips: 16x16 images in [-1, 1], resized to 224 first.
  const LossNorm norm("lpips",
                      [&lpips](const at::Tensor& a, const at::Tensor& b) { return lpips(a, b); });
  EXPECT_TRUE(at::allclose(consistency_norm(d.at("a"), d.at("b"), norm), d.at("loss"), 1e-4, 1e-6));

  // Files that are not what they should be: one line naming the file.
  TensorMap five;
  for (int64_t c : {64, 128, 256, 512}) five.insert(str("w", c), at::ones({c}));
  save_tensor_file(dir.file("four.safetensors"), five);
  EXPECT_NE(test::error_of([&] {
              Lpips::load(dir.file("vgg16.pth"), dir.file("four.safetensors"));
            }).find("four.safetensors: expected LPIPS' five layer weights"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] {
              Lpips::load(dir.file("four.safetensors"), dir.file("lpips_weights.pt"));
            }).find("expected torchvision's VGG16 state dict (features.0.weight missing)"),
            std::string::npos);

  // `idiff cm-train --loss_norm lpips` with the files: two steps of consistency training on
  // 16x16 images (resized to 224 for the network), a finite positive loss logged.
  test::TempDir data, run;
  test::write_shape_folder(data.path(), 2);
  const std::vector<std::string> cm = {"cm-train",
                                       "--training_mode",
                                       "consistency_training",
                                       "--data_dir",
                                       data.path(),
                                       "--log_dir",
                                       run.path(),
                                       "--batch_size",
                                       "2",
                                       "--max_steps",
                                       "2",
                                       "--log_interval",
                                       "1",
                                       "--image_size=16",
                                       "--num_channels=32",
                                       "--num_res_blocks=1",
                                       "--attention_resolutions=8",
                                       "--num_head_channels=16",
                                       "--channel_mult=1,2",
                                       "--device=cpu",
                                       "--loss_norm",
                                       "lpips"};
  const auto with_files =
      test::cat_args(cm, std::vector<std::string>{"--lpips_vgg16", dir.file("vgg16.pth"),
                                                  "--lpips_weights", dir.file("lpips_weights.pt")});
  const test::RunResult ok = test::run_idiff(with_files);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const auto losses = test::progress_column(run.file("progress.csv"), "loss");
  ASSERT_EQ(losses.size(), 2u);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l) && l > 0) << l;
  const test::RunResult missing = test::run_idiff(
      test::cat_args(cm, std::vector<std::string>{"--lpips_vgg16", dir.file("vgg16.pth")}));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--loss_norm lpips needs the LPIPS network"), std::string::npos)
      << missing.err;
}

}  // namespace
}  // namespace idiff
