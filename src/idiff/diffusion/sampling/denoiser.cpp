#include "idiff/diffusion/sampling/denoiser.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

namespace idiff {

Denoiser::Denoiser(ModelFn model, DenoiserOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  IDIFF_REQUIRE(options_.dynamic_threshold_p > 0.0 && options_.dynamic_threshold_p <= 1.0,
                ConfigError, "`dynamic_threshold` must lie in (0, 1], got ",
                options_.dynamic_threshold_p);
  if (options_.karras) {
    IDIFF_REQUIRE(!options_.cond_fn, ConfigError,
                  "classifier guidance (`classifier_path`) needs a Gaussian-diffusion model, not a "
                  "Karras (EDM or consistency) one");
    karras_.emplace(*options_.karras);
  }
}

at::Tensor Denoiser::operator()(const at::Tensor& x, const at::Tensor& t_model,
                                const at::Tensor& alpha, const at::Tensor& sigma) const {
  const int64_t n = x.size(0), c = x.size(1);
  // The network's float32 timesteps (float64 for float64 samples: exact fractional times).
  const auto t_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (karras_) {
    // D(x_ve, sigma_k) on x_ve = x / alpha (cm/karras_diffusion.py denoise).
    const at::Tensor sigma_k = (sigma / alpha).to(t_type).expand({n});
    at::Tensor x0 = karras_->denoise(model_, x / alpha, sigma_k).denoised.to(x.scalar_type());
    if (options_.denoised_fn) x0 = options_.denoised_fn(x0);
    x0 = threshold(x0);
    return options_.replace_fn ? options_.replace_fn(x0) : x0;
  }
  at::Tensor out = model_(x, t_model.to(t_type).expand({n}));
  TORCH_CHECK(out.size(1) == (options_.learned_variance ? 2 * c : c), "the model returned ",
              out.size(1), " channels for ", c, "-channel samples");
  if (options_.learned_variance) out = out.narrow(1, 0, c);  // the mean channels
  out = out.to(x.scalar_type());
  // x_0 = (x_t - sigma_t eps) / alpha_t (Ho et al. eq. 4 solved for x_0).
  at::Tensor x0 = options_.predict_xstart ? out : (x - sigma * out) / alpha;
  if (options_.denoised_fn) x0 = options_.denoised_fn(x0);
  x0 = threshold(x0);
  if (options_.cond_fn) {
    // eps' = eps - sigma g  <=>  x_0' = (x - sigma eps') / alpha = x_0 + sigma^2 / alpha g.
    x0 = x0 + sigma * sigma / alpha * options_.cond_fn(x, t_model.to(t_type).expand({n}));
  }
  return options_.replace_fn ? options_.replace_fn(x0) : x0;
}

at::Tensor Denoiser::threshold(const at::Tensor& x0) const {
  const int64_t n = x0.size(0);
  switch (options_.threshold) {
    case Threshold::None:
      return x0;
    case Threshold::Clip:
      return x0.clamp(-1, 1);
    case Threshold::Dynamic: {
      const at::Tensor s =
          at::quantile(x0.abs().reshape({n, -1}), options_.dynamic_threshold_p, 1).clamp_min(1.0);
      std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
      shape[0] = n;
      const at::Tensor sv = s.view(shape);
      return at::minimum(at::maximum(x0, -sv), sv) / sv;
    }
  }
  return x0;
}

}  // namespace idiff
