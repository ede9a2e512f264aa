// Zero-shot editing with a consistency model (cm/karras_diffusion.py iterative_inpainting,
// iterative_colorization, iterative_superres; Song et al. 2023, sec. 6 and appendix D): the
// multistep consistency sampler (--ts) where each step's x_0, after clipping, takes the known
// part of the image back before the next level's noise is added:
//   x_0 = replace(known, clamp(D(x, t_i))),   x' = x_0 + sqrt(t_{i+1}^2 - t_min^2) z.
// Inpainting keeps the pixels a mask marks; colorization the luminance (the first axis of an
// orthonormal basis whose first vector is the grey weights 0.2989, 0.5870, 0.1140);
// super-resolution each 8x8 patch's mean (the first axis of a basis whose first vector is
// the patch's average).
#pragma once

#include "idiff/diffusion/model_fn.h"

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

namespace idiff {

// The known part of `keep` with the rest of `x` (a projection onto the kept subspace and
// its orthogonal complement: a mask's pixels, the luminance axis, the patch means).
using MixFn = std::function<at::Tensor(const at::Tensor& keep, const at::Tensor& x)>;

struct EditTask {
  std::string name;  // inpaint, colorize, superres
  at::Tensor known;  // [N, C, H, W]: the part of the image that is kept, in the edit's form
  MixFn mix;
  // mix(known, x0): what the consistency sampler applies to each x_0.
  DenoisedFn replace;
};

// mask: [N or 1, C or 1, H, W], 1 where the image is kept. The known image is
// images * mask - (1 - mask) (the unknown part black), as the reference's.
EditTask inpaint_task(const at::Tensor& images, const at::Tensor& mask);
// The images' luminance, the colour axes zeroed.
EditTask colorize_task(const at::Tensor& images);
// Each patch x patch block replaced by its mean; H and W multiples of patch.
EditTask superres_task(const at::Tensor& images, int64_t patch = 8);

// "inpaint, colorize, superres" (mask: inpaint only).
EditTask make_edit_task(const std::string& name, const at::Tensor& images, const at::Tensor& mask);

}  // namespace idiff
