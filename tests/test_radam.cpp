// RAdam, consistency_models' optimizer (torch.optim.RAdam in its TrainLoop), as a rule of
// idiff's AdamW class: its parameters after 25 steps equal PyTorch's on the same gradients
// (the unrectified first steps and the rectified ones after), its optimizer file loads into
// torch.optim.RAdam with the state PyTorch reached, and edm-train and cm-train take it by
// default while train keeps AdamW.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/io/pt_archive.h"
#include "idiff/io/safetensors.h"
#include "idiff/train/adamw.h"
#include "idiff/train/optimizer_file.h"

#include <ATen/ATen.h>

namespace idiff::test {
namespace {

TEST(RAdam, EqualsTorchOptimRAdamAndItsFileLoadsThere) {
  TempDir dir;
  at::manual_seed(7);
  const std::vector<std::vector<int64_t>> shapes = {{37}, {8, 4, 3, 3}, {5, 7}};
  const int64_t steps = 25;
  const double lr = 1e-2, wd = 0.05;
  TensorMap in;
  std::vector<at::Tensor> params;
  for (size_t i = 0; i < shapes.size(); ++i) {
    params.push_back(at::randn(shapes[i]));
    in.insert(str("p.", i), params.back().clone());
  }
  for (int64_t s = 0; s < steps; ++s) {
    for (size_t i = 0; i < shapes.size(); ++i)
      in.insert(str("g.", s, ".", i), at::randn(shapes[i]));
  }
  in.insert("lr", at::scalar_tensor(lr, at::kDouble));
  in.insert("wd", at::scalar_tensor(wd, at::kDouble));
  AdamWOptions o;
  o.lr = lr;
  o.weight_decay = wd;
  set_optimizer_rule(o, "radam");
  AdamW opt(params, o);
  std::vector<at::Tensor> after_first;
  for (int64_t s = 0; s < steps; ++s) {
    for (size_t i = 0; i < shapes.size(); ++i)
      params[i].mutable_grad() = in.at(str("g.", s, ".", i));
    opt.step();
    if (s == 0) {
      for (const auto& p : params) after_first.push_back(p.clone());
    }
  }
  // The first step is momentum SGD (rho_t = 1): p - lr (g + wd p), exactly.
  EXPECT_TRUE(at::allclose(after_first[0], in.at("p.0") - lr * (in.at("g.0.0") + wd * in.at("p.0")),
                           1e-6, 1e-7));
  save_optimizer_file(dir.file("opt.pt"), opt);
  write_safetensors(dir.file("in.safetensors"), in);
  const auto r = run_python_script(
      "torch_radam.py",
      {dir.file("in.safetensors"), dir.file("out.safetensors"), dir.file("opt.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const TensorMap out = read_safetensors(dir.file("out.safetensors"));
  for (size_t i = 0; i < shapes.size(); ++i) {
    EXPECT_TRUE(at::allclose(params[i], out.at(str("p.", i)), 1e-5, 1e-6)) << i;
    EXPECT_FALSE(at::allclose(params[i], in.at(str("p.", i)), 1e-3, 1e-3)) << i;  // it moved
  }
  AdamWOptions bad;
  EXPECT_NE(
      error_of([&] { set_optimizer_rule(bad, "sgd"); }).find("`optimizer` must be adamw or radam"),
      std::string::npos);
}

TEST(RAdam, ConsistencyModelsCommandsTakeItByDefault) {
  TempDir data, edm, plain;
  write_shape_folder(data.path(), 4);
  const std::vector<std::string> small = {"--image_size=16",        "--num_channels=32",
                                          "--num_res_blocks=1",     "--attention_resolutions=8",
                                          "--num_head_channels=16", "--channel_mult=1,2",
                                          "--device=cpu",           "--num_workers=1",
                                          "--batch_size=2",         "--max_steps=1"};
  auto r = run_idiff(cat_args(
      std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--log_dir", edm.path()},
      small));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("optimizer: radam"), std::string::npos) << r.out;
  const PickleValue group = read_pt(edm.file("opt000001.pt")).at("param_groups").items()[0];
  EXPECT_TRUE(group.find("decoupled_weight_decay") != nullptr);
  r = run_idiff(cat_args(
      std::vector<std::string>{"train", "--data_dir", data.path(), "--log_dir", plain.path()},
      small));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("optimizer: adamw"), std::string::npos) << r.out;
  r = run_idiff(cat_args(std::vector<std::string>{"train", "--data_dir", data.path(), "--log_dir",
                                                  plain.file("x"), "--optimizer", "sgd"},
                         small));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--optimizer must be adamw or radam"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace idiff::test
