#include "idiff/drivers/guided_models.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/sampling/guidance.h"

#include <ATen/ATen.h>

namespace idiff {

CondFn classifier_cond_fn(EncoderUNetModel classifier, at::Tensor y, double scale) {
  const ModelFn logits = [classifier](const at::Tensor& x, const at::Tensor& t) mutable {
    return classifier->forward(x, t);
  };
  return classifier_cond_fn(logits, std::move(y), scale);
}

ModelFn classifier_free_model_fn(UNetModel model, ModelKwargs kwargs, double scale) {
  const UNetOptions& o = model->options();
  IDIFF_REQUIRE(o.num_classes > 0 && o.null_label, ConfigError,
                "`guidance_scale` needs a class-conditional model trained with a null label "
                "(`class_dropout_prob` > 0)");
  IDIFF_REQUIRE(kwargs.y.defined(), ConfigError, "`guidance_scale`: the samples need labels");
  // [labels; null label], and the low-resolution input twice for an upsampler.
  ModelKwargs both = kwargs;
  both.y = at::cat({kwargs.y, at::full_like(kwargs.y, o.num_classes)});
  if (kwargs.low_res.defined()) both.low_res = at::cat({kwargs.low_res, kwargs.low_res});
  const ModelFn cond_and_uncond = [model, both](const at::Tensor& x, const at::Tensor& t) mutable {
    return model->forward_kwargs(x, t, both);
  };
  return classifier_free_guidance(cond_and_uncond, scale);
}

}  // namespace idiff
