// One batch of a sampling run (sample_stages.h): the labels, x_T and one run of the solver,
// for the samples of one job or for parts of several jobs merged into one model call.
#include "idiff/drivers/sample_stages.h"

#include "idiff/common/error.h"
#include "idiff/data/image_grid.h"
#include "idiff/drivers/guided_models.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

namespace idiff {
namespace {

using DrawFn = std::function<at::Tensor(at::IntArrayRef, const at::TensorOptions&)>;

// The conditioning of a part's samples [start, start + n): base images and labels for an
// upsampler, else labels by the part's --class (cycled by the job's sample index, so they
// do not depend on the number of ranks) or drawn from its generator. Returns the labels for
// the output (undefined without); low_res and y of the part are appended to the lists.
at::Tensor part_conditioning(const SamplingPlan& plan, const BatchSegment& part,
                             std::vector<at::Tensor>& low_res, std::vector<at::Tensor>& ys) {
  if (plan.job.super_res) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < part.n; ++i) idx.push_back((part.start + i) % plan.base.images.size(0));
    const at::Tensor index = at::tensor(idx, at::kLong);
    low_res.push_back(plan.base.images.index_select(0, index));
    if (!plan.base.labels.defined()) return at::Tensor();
    ys.push_back(plan.base.labels.index_select(0, index));
    return ys.back();
  }
  if (!plan.with_labels) return at::Tensor();
  at::Tensor y;
  if (part.classes.empty()) {
    y = at::randint(0, plan.num_classes, {part.n}, *part.gen, at::kLong);
  } else {
    y = at::empty({part.n}, at::kLong);
    for (int64_t i = 0; i < part.n; ++i)
      y[i] = part.classes[static_cast<size_t>(part.start + i) % part.classes.size()];
  }
  // An unconditional model guided by a classifier does not see the labels.
  if (plan.job.model.class_cond) ys.push_back(y);
  return y;
}

// The seed of the image of global index `index` (a multiplier of its own, so the streams
// differ from the ranks' of the same --seed).
uint64_t image_seed(uint64_t seed, uint64_t index) {
  return seed + (index + 1) * 0xD1B54A32D192ED03ull;
}

// --generator determ-indiv: image `start + i` draws all its noise from a stream of its own
// (seeded from --seed and its global index), so its noise does not depend on the batch size
// or the ranks (consistency_models' get_generator("determ-indiv")).
DrawFn per_image_draws(uint64_t seed, int64_t start, int64_t n) {
  auto gens = std::make_shared<std::vector<at::Generator>>();
  for (int64_t i = 0; i < n; ++i) {
    gens->push_back(at::make_generator<at::CPUGeneratorImpl>(
        image_seed(seed, static_cast<uint64_t>(start + i))));
  }
  return [gens](at::IntArrayRef shape, const at::TensorOptions& options) {
    std::vector<int64_t> one = shape.vec();
    one[0] = 1;
    std::vector<at::Tensor> parts;
    for (at::Generator& g : *gens) parts.push_back(at::randn(one, g, at::kFloat));
    return at::cat(parts).to(options);
  };
}

// Every N(0, I) tensor of the batch, part by part: each part's rows from its own stream.
DrawFn batch_draws(const SamplingPlan& plan, const std::vector<BatchSegment>& parts) {
  std::vector<DrawFn> draws;
  std::vector<int64_t> sizes;
  for (const BatchSegment& part : parts) {
    sizes.push_back(part.n);
    if (plan.job.sample.generator == "determ-indiv") {
      draws.push_back(per_image_draws(part.seed, part.start, part.n));
    } else {
      at::Generator* gen = part.gen;
      draws.push_back([gen](at::IntArrayRef shape, const at::TensorOptions& options) {
        return draw_normal(shape, options, *gen);
      });
    }
  }
  return [draws, sizes](at::IntArrayRef shape, const at::TensorOptions& options) {
    std::vector<at::Tensor> rows;
    std::vector<int64_t> one = shape.vec();
    for (size_t i = 0; i < draws.size(); ++i) {
      one[0] = sizes[i];
      rows.push_back(draws[i](one, options));
    }
    return rows.size() == 1 ? rows[0] : at::cat(rows);
  };
}

// x_T of the batch, or with an init image its part noised to the first level (SDEdit). A
// Karras model's x_T is sigma_max times the unit noise (x / alpha of the first level).
at::Tensor starting_state(const SamplingPlan& p, const std::vector<BatchSegment>& parts,
                          const SampleOptions& opts, int64_t n) {
  const at::Tensor x = initial_noise({n, p.channels, p.size, p.size}, opts);
  std::vector<at::Tensor> rows;
  int64_t row = 0;
  for (const BatchSegment& part : parts) {
    at::Tensor xs = x.narrow(0, row, part.n);
    if (part.init.defined()) {
      xs = part.init.to(p.device).expand_as(xs) * p.first_level.alpha + xs * p.first_level.sigma;
    } else if (p.setup.karras) {
      xs = xs * p.first_level.sigma;
    }
    rows.push_back(xs);
    row += part.n;
  }
  return rows.size() == 1 ? rows[0] : at::cat(rows);
}

}  // namespace

BatchImages sample_batch(SamplingPlan& p, int64_t start, int64_t n, at::Generator& gen,
                         const StepCallback& progress, int64_t batch_number) {
  BatchSegment part;
  part.start = start;
  part.n = n;
  part.gen = &gen;
  part.seed = p.job.sample.seed;
  part.classes = p.classes;
  part.init = p.init;
  BatchImages out = sample_segments(p, {part}, progress, batch_number);
  IDIFF_REQUIRE(out.finite.all().item<bool>(), Error, "the samples of batch ", batch_number,
                " hold NaN or infinity (model ", p.job.sample.model_path, "); not writing them");
  return out;
}

BatchImages sample_segments(SamplingPlan& p, const std::vector<BatchSegment>& parts,
                            const StepCallback& progress, int64_t batch_number) {
  const SampleConfig& s = p.job.sample;
  int64_t n = 0;
  std::vector<at::Tensor> low_res, ys, labels;
  for (const BatchSegment& part : parts) {
    n += part.n;
    const at::Tensor y = part_conditioning(p, part, low_res, ys);
    if (y.defined()) labels.push_back(y);
  }
  ModelKwargs kw;
  if (!low_res.empty()) kw.low_res = at::cat(low_res).to(p.device);
  if (!ys.empty()) kw.y = at::cat(ys).to(p.device);
  const at::Tensor label = labels.empty() ? at::Tensor() : at::cat(labels).to(p.device);
  c10::InferenceMode inference;
  UNetModel model = p.model;
  p.current->fn = p.free_guided
                      ? classifier_free_model_fn(model, kw, s.guidance_scale)
                      : ModelFn([model, kw](const at::Tensor& x, const at::Tensor& t) mutable {
                          return model->forward_kwargs(x, t, kw);
                        });
  if (p.classifier_guided)
    p.current->cond = classifier_cond_fn(p.classifier, label, s.classifier_scale);
  SampleOptions opts;
  opts.device = p.device;
  opts.progress = progress;
  opts.draw = batch_draws(p, parts);
  if (p.noise.defined()) {
    std::vector<at::Tensor> rows;
    for (const BatchSegment& part : parts) rows.push_back(p.noise.narrow(0, part.start, part.n));
    opts.noise = at::cat(rows).to(p.device);
  }
  at::Tensor x = run_sampler(*p.solver, starting_state(p, parts, opts, n), opts, p.loop);
  if (p.setup.karras) x = x.clamp(-1, 1);  // karras_sample's last line
  BatchImages out;
  out.finite = at::isfinite(x).flatten(1).all(1).cpu();
  out.uint8 = samples_to_uint8(x);
  out.floats = s.save_float ? x.to(at::kFloat).cpu()
                            : at::empty({0, p.channels, p.size, p.size}, at::kFloat);
  out.labels = label.defined() ? label.cpu() : at::empty({0}, at::kLong);
  return out;
}

}  // namespace idiff
