#include "idiff/drivers/image_sample.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/common/progress.h"
#include "idiff/common/strings.h"
#include "idiff/drivers/ranks.h"
#include "idiff/drivers/sample_stages.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace idiff {
namespace {

// Every rank's part of a round, in rank order (this rank's alone without ranks).
void gather_into(DistContext& ctx, const at::Tensor& part, std::vector<at::Tensor>& out) {
  if (!ctx.is_distributed()) {
    out.push_back(part);
    return;
  }
  for (auto& p : ctx.all_gather(part)) out.push_back(p);
}

}  // namespace

SampleResult run_sampling(const SampleJob& job, DistContext* dist) {
  const SampleConfig& s = job.sample;
  check_sample_job(job);
  SamplerSetup setup = sampler_setup(s, job.diffusion);
  const Ranks ranks = join_sampling_ranks(dist, job.model, job.diffusion, s, &setup);
  DistContext& ctx = *ranks.ctx;
  const int64_t rank = ctx.rank(), world = ctx.world_size();
  // Only rank 0 writes the log and the outputs.
  Logger logger(ctx.is_main() ? Logger::choose_dir(s.log_dir) : "", !ctx.is_main());
  logger.log("Logging to " + logger.dir());
  logger.log("device: " + describe_device(ctx.device()));
  if (ctx.is_distributed()) logger.log("distributed: " + ctx.describe());
  SamplingPlan plan = prepare_sampling(job, std::move(setup), ctx.device(), logger);
  for (const std::string& line : describe_sampling(plan, world)) logger.log(line);

  // Rounds as the reference's: each rank samples up to --batch_size images per round and
  // all of them are gathered in rank order, so sample i of the output is global index i
  // (round, then rank, then position). The last round is cut to exactly --num_samples.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(rank_seed(s.seed, rank));
  const int64_t per_round = s.batch_size * world;
  const int64_t rounds = (s.num_samples + per_round - 1) / per_round;
  std::vector<at::Tensor> images, labels, floats;
  std::string stopped;  // job.stop's answer after a round, once it has one
  // One count over the whole run (rank 0's steps): a bar with the time left on a terminal,
  // a line every 10 s otherwise.
  const int64_t steps = plan.solver->num_steps();
  ProgressBar bar("sampling", rounds * steps, ctx.is_main());
  for (int64_t round = 0; round < rounds; ++round) {
    // Global index of this rank's first sample of the round, and how many it makes.
    const int64_t start = round * per_round + rank * s.batch_size;
    const int64_t n = std::clamp<int64_t>(s.num_samples - start, 0, s.batch_size);
    BatchImages batch{at::empty({0, plan.size, plan.size, plan.channels}, at::kByte),
                      at::empty({0, plan.channels, plan.size, plan.size}, at::kFloat),
                      at::empty({0}, at::kLong), at::empty({0}, at::kBool)};
    if (n > 0) {
      const auto progress = [&bar, round, steps](const SampleStep& step) {
        bar.update(round * steps + step.index + 1);
      };
      batch = sample_batch(plan, start, n, gen, progress, round + 1);
    }
    gather_into(ctx, batch.uint8, images);
    if (s.save_float) gather_into(ctx, batch.floats, floats);
    if (plan.with_labels) gather_into(ctx, batch.labels, labels);
    logger.log(str("created ", std::min(s.num_samples, (round + 1) * per_round), " samples"));
    if (!ctx.is_distributed() && job.stop && round + 1 < rounds) stopped = job.stop();
    if (!stopped.empty()) break;
  }

  bar.finish();
  SampleResult r;
  r.stopped = stopped;
  r.images = at::cat(images);
  if (!labels.empty()) r.labels = at::cat(labels);
  TORCH_CHECK(!stopped.empty() || r.images.size(0) == s.num_samples, "gathered ", r.images.size(0),
              " samples, expected ", s.num_samples);
  if (!stopped.empty()) {
    logger.log(str("stopped by ", stopped, " after ", r.images.size(0), " of ", s.num_samples,
                   " samples; writing the finished ones (samples.json: partial)"));
  }
  if (ctx.is_main())
    write_samples(plan, r, s.save_float ? at::cat(floats) : at::Tensor(), world, logger);
  ctx.barrier();  // every rank returns once the files are written (or fails if rank 0 did)
  logger.log(stopped.empty() ? "sampling complete" : "sampling stopped; partial output saved");
  return r;
}

}  // namespace idiff
