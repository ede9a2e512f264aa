#include "idiff/drivers/image_nll.h"

#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/common/progress.h"
#include "idiff/common/strings.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/ranks.h"
#include "idiff/drivers/sample_stages.h"
#include "idiff/io/npz.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

namespace idiff {

NllResult run_nll(const SampleJob& job, DistContext* dist) {
  const SampleConfig& s = job.sample;
  check_checkpoint_and_counts(s);
  IDIFF_REQUIRE(!s.data_dir.empty(), ConfigError,
                "`data_dir` is required (the images to evaluate)");
  IDIFF_REQUIRE(!is_karras(job.diffusion), ConfigError, "`training_mode` ",
                job.diffusion.training_mode,
                ": bits/dim is the Gaussian diffusion's variational bound; a Karras (EDM or "
                "consistency) model has none");
  const Ranks ranks = join_sampling_ranks(dist, job.model, job.diffusion, s);
  DistContext& ctx = *ranks.ctx;
  const c10::Device device = ctx.device();
  Logger logger(ctx.is_main() ? Logger::choose_dir(s.log_dir) : "", !ctx.is_main());
  logger.log("Logging to " + logger.dir());
  if (ctx.is_distributed()) logger.log("distributed: " + ctx.describe());
  logger.log("diffusion: " + describe_defaults(job.diffusion));
  UNetModel model = load_model(job.model, false, s.model_path, device);
  const GaussianDiffusion diffusion = create_gaussian_diffusion(job.diffusion);

  DataConfig dc;
  dc.data_dir = s.data_dir;
  dc.batch_size = s.batch_size;
  dc.image_size = job.model.image_size;
  dc.class_cond = job.model.class_cond;
  dc.image_channels = job.model.image_channels;
  dc.deterministic = true;
  dc.num_workers = s.num_workers;
  dc.max_image_pixels = s.max_image_pixels;
  dc.seed = s.seed;
  dc.rank = ctx.rank();  // each rank evaluates its shard, items [rank::world_size]
  dc.world_size = ctx.world_size();
  auto loader = load_data(dc);
  logger.log(loader->dataset().summary());

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(rank_seed(s.seed, ctx.rank()));
  std::vector<double> batch_bpd;
  at::Tensor vb_sum, mse_sum, xmse_sum;
  int64_t done = 0, batches = 0;
  // Counted in model calls (T per batch; batches of --batch_size images on every rank until
  // --num_samples are done): one batch may take minutes.
  const int64_t per_batch = s.batch_size * ctx.world_size();
  const int64_t T = diffusion.num_timesteps();
  ProgressBar bar("nll model calls", (s.num_samples + per_batch - 1) / per_batch * T,
                  ctx.is_main());
  int64_t calls = 0;
  while (done < s.num_samples) {
    Batch b = loader->next();
    ModelKwargs kw;
    if (job.model.class_cond) kw.y = b.labels.to(device);
    c10::InferenceMode inference;
    ModelFn fn = [&model, &kw, &bar, &calls](const at::Tensor& x, const at::Tensor& t) {
      bar.update(++calls);
      return model->forward_kwargs(x, t, kw);
    };
    const BpdResult r = diffusion.calc_bpd_loop(fn, b.images.to(device), s.clip_denoised, gen);
    // This batch's means [bpd, vb [T], mse [T], xstart_mse [T]], averaged over the ranks as
    // the reference does (every rank's batch has --batch_size images).
    at::Tensor metrics =
        at::cat({at::full({1}, r.total_bpd.mean().item<double>(), at::kDouble),
                 r.vb.mean(0).to(at::kDouble).cpu(), r.mse.mean(0).to(at::kDouble).cpu(),
                 r.xstart_mse.mean(0).to(at::kDouble).cpu()});
    if (ctx.is_distributed())
      metrics = ctx.all_reduce_sum(metrics) / static_cast<double>(ctx.world_size());
    const at::Tensor vb = metrics.narrow(0, 1, T), mse = metrics.narrow(0, 1 + T, T),
                     xmse = metrics.narrow(0, 1 + 2 * T, T);
    vb_sum = vb_sum.defined() ? vb_sum + vb : vb;
    mse_sum = mse_sum.defined() ? mse_sum + mse : mse;
    xmse_sum = xmse_sum.defined() ? xmse_sum + xmse : xmse;
    batch_bpd.push_back(metrics[0].item<double>());
    done += b.images.size(0) * ctx.world_size();
    ++batches;
    double mean = 0;
    for (double v : batch_bpd) mean += v;
    mean /= static_cast<double>(batch_bpd.size());
    logger.log(str("done ", done, " samples: bpd=", format_double(mean)));
  }
  NllResult out;
  for (double v : batch_bpd) out.bpd += v;
  out.bpd /= static_cast<double>(batch_bpd.size());
  out.num_images = done;
  out.vb = (vb_sum / batches).to(at::kFloat);
  out.mse = (mse_sum / batches).to(at::kFloat);
  out.xstart_mse = (xmse_sum / batches).to(at::kFloat);
  out.dir = logger.dir();
  for (const auto& [name, terms] : {std::pair<std::string, at::Tensor>{"vb", out.vb},
                                    {"mse", out.mse},
                                    {"xstart_mse", out.xstart_mse}}) {
    if (!ctx.is_main()) break;
    TensorMap arrays;
    arrays.insert("arr_0", terms);
    const std::string path = logger.dir() + "/" + name + "_terms.npz";
    logger.log("saving " + name + " terms to " + path);
    write_npz(path, arrays);
  }
  ctx.barrier();
  logger.log(str("bits/dim over ", done, " images: ", format_double(out.bpd)));
  logger.log("evaluation complete");
  return out;
}

}  // namespace idiff
