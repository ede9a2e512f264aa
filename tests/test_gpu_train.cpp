// The training fast paths on CUDA against their plain twins, ctest label `gpu` (skipped
// without a device): SDPA against the reference's einsum attention in float32 and bf16
// (outputs and gradients), the fused AdamW against the single-tensor update, gradient
// checkpointing under bf16 autocast, and NCCL on a one-rank group. The same checks run on
// the CPU in test_perf.cpp, test_model.cpp and test_dist.cpp.
#include "test_dist_util.h"
#include "test_fast_paths.h"
#include "test_util.h"

#include "idiff/distributed/dist_context.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <iostream>

namespace idiff {
namespace {

const c10::Device kCuda(c10::kCUDA, 0);

// The shapes of attention in the models: [batch * heads, 3 * channels per head, positions].
// 64 channels over a 16x16 map (the CIFAR-10 model's 16x16 level), 8 over 8x8 (the tiny
// test model's), 32 over 32x32 (ImageNet-64's 32x32 level with 4 heads of 128 channels
// would be 128; 32 exercises another kernel choice).
const std::vector<std::vector<int64_t>> kAttentionShapes = {
    {64, 192, 256}, {16, 24, 64}, {8, 96, 1024}};

TEST(GpuAttention, SdpaEqualsTheEinsumInFloat32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const test::ExactFloat32 exact;
  for (const auto& shape : kAttentionShapes) {
    const c10::IntArrayRef dims(shape);
    at::manual_seed(5);
    const at::Tensor qkv = at::randn(shape, at::TensorOptions(kCuda));
    const at::Tensor g = at::randn({shape[0], shape[1] / 3, shape[2]}, qkv.options());
    const auto [ref, ref_grad] = test::attention_and_grad(qkv, AttentionImpl::Einsum, g);
    for (const auto impl : {AttentionImpl::Sdpa, AttentionImpl::Bmm, AttentionImpl::Auto}) {
      const auto [out, grad] = test::attention_and_grad(qkv, impl, g);
      std::cout << "[measured] float32 attention " << dims << " impl " << static_cast<int>(impl)
                << ": output " << test::rel_error(out, ref) << ", gradient "
                << test::rel_error(grad, ref_grad) << "\n";
      EXPECT_CLOSE(out, ref, 1e-4) << dims << " impl " << static_cast<int>(impl);
      EXPECT_CLOSE(grad, ref_grad, 1e-4) << dims << " impl " << static_cast<int>(impl);
    }
  }
}

// bf16 inputs: SDPA (flash attention) and the einsum both against the einsum in float64 on
// the same (upcast) inputs; SDPA may not be much worse than the reference's own bf16 path.
TEST(GpuAttention, SdpaEqualsTheEinsumInBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const auto& shape : kAttentionShapes) {
    const c10::IntArrayRef dims(shape);
    at::manual_seed(6);
    const at::Tensor qkv = at::randn(shape, at::TensorOptions(kCuda).dtype(at::kBFloat16));
    const at::Tensor g = at::randn({shape[0], shape[1] / 3, shape[2]}, qkv.options());
    const auto [exact, exact_grad] =
        test::attention_and_grad(qkv.to(at::kDouble), AttentionImpl::Einsum, g.to(at::kDouble));
    const auto [einsum, einsum_grad] = test::attention_and_grad(qkv, AttentionImpl::Einsum, g);
    const auto [sdpa, sdpa_grad] = test::attention_and_grad(qkv, AttentionImpl::Sdpa, g);
    EXPECT_EQ(sdpa.scalar_type(), at::kBFloat16);
    const double e_out = test::rel_error(einsum, exact),
                 e_grad = test::rel_error(einsum_grad, exact_grad);
    const double s_out = test::rel_error(sdpa, exact),
                 s_grad = test::rel_error(sdpa_grad, exact_grad);
    std::cout << "[measured] bf16 attention " << dims << " vs float64: einsum output " << e_out
              << " gradient " << e_grad << ", sdpa output " << s_out << " gradient " << s_grad
              << "\n";
    // bf16 keeps 8 bits of mantissa (4e-3 relative per rounding).
    EXPECT_LT(s_out, 2e-2) << dims;
    EXPECT_LT(s_grad, 3e-2) << dims;
    EXPECT_LT(s_out, 2 * e_out + 4e-3) << dims;
    EXPECT_LT(s_grad, 2 * e_grad + 4e-3) << dims;
  }
}

TEST(GpuAdamW, FusedEqualsTheSingleTensorUpdate) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const int steps = 25;
  const auto single = test::run_adamw(AdamWOptions::Impl::Single, steps, kCuda);
  const auto fused = test::run_adamw(AdamWOptions::Impl::Fused, steps, kCuda);
  const auto automatic = test::run_adamw(AdamWOptions::Impl::Auto, steps, kCuda);
  const auto cpu = test::run_adamw(AdamWOptions::Impl::Single, steps);
  for (size_t i = 0; i < single.size(); ++i) {
    EXPECT_CLOSE(fused[i], single[i], 1e-6) << "parameter " << i;
    EXPECT_CLOSE(automatic[i], fused[i], 0.0) << "parameter " << i;
    EXPECT_CLOSE(single[i], cpu[i], 1e-6) << "parameter " << i;
  }
}

// --use_checkpoint under bf16 training: the backward's recomputation runs under the
// forward's autocast state and gives the plain model's gradients.
TEST(GpuCheckpoint, RecomputesUnderBf16Autocast) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const double err = test::checkpoint_grad_error_under_autocast(kCuda);
  std::cout << "[measured] checkpointed vs plain gradients under bf16 autocast: " << err << "\n";
  EXPECT_LT(err, 1e-2);  // the CPU's measured 5e-5; cuDNN may pick other bf16 kernels
}

TEST(GpuDist, NcclRunsAOneRankGroup) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ASSERT_TRUE(DistContext::built_with_nccl()) << "a CUDA build of LibTorch has NCCL";
  test::check_world_size_one(kCuda, "nccl");
}

}  // namespace
}  // namespace idiff
