// The TrainLoop data-parallel across processes (issue 7): on 2 ranks (Gloo over loopback,
// different initial weights) parameters, EMA and the loss-aware sampler stay identical on
// both after every step and equal one process trained on the concatenated batch with the
// same timesteps and noise; in fp16 a bad batch on one rank makes both skip the step.
//
// The worker side (train_loop_worker) runs in copies of this test binary started through
// test_dist_worker.cpp; the parent side compares what the ranks print.
// test_dist_cli.cpp drives the idiff program itself as ranks.
#include "test_dist_util.h"
#include "test_train_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/model/factory.h"
#include "idiff/train/ema.h"
#include "idiff/train/train_loop.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <regex>

namespace idiff::test {

// ---- worker side -----------------------------------------------------------------------

namespace {

constexpr int64_t kLocalBatch = 2;  // --batch_size per rank

uint64_t hash_of(const std::vector<at::Tensor>& ts) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes
  for (const auto& t : ts) {
    const at::Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

double rel_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  std::vector<at::Tensor> fa, fb;
  for (size_t i = 0; i < a.size(); ++i) {
    fa.push_back(a[i].detach().reshape({-1}).to(at::kDouble));
    fb.push_back(b[i].detach().reshape({-1}).to(at::kDouble));
  }
  return rel_error(at::cat(fa), at::cat(fb));
}

// The concatenated batch of all ranks for step k, with its timesteps and noise drawn from
// a seed shared by every rank (and by the one-process reference); rank r trains on rows
// [r * kLocalBatch, (r + 1) * kLocalBatch).
TrainBatch global_batch(int64_t step, int64_t global, int64_t num_timesteps) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(500 + static_cast<uint64_t>(step));
  const at::Tensor pool =
      at::upsample_bilinear2d(at::rand({6, 3, 8, 8}, gen) * 2 - 1, {32, 32}, false);
  std::vector<int64_t> idx, ts;
  for (int64_t i = 0; i < global; ++i) {
    idx.push_back((step * global + i) % pool.size(0));
    ts.push_back((step * global + i) % num_timesteps);  // every t equally often
  }
  TrainBatch b;
  b.images = pool.index_select(0, at::tensor(idx));
  b.timesteps = at::tensor(ts, at::kLong);
  b.noise = at::randn(b.images.sizes(), gen);
  return b;
}

TrainBatch rank_slice(const TrainBatch& g, int64_t rank) {
  TrainBatch b;
  b.images = g.images.narrow(0, rank * kLocalBatch, kLocalBatch);
  b.timesteps = g.timesteps.narrow(0, rank * kLocalBatch, kLocalBatch);
  b.noise = g.noise.narrow(0, rank * kLocalBatch, kLocalBatch);
  return b;
}

}  // namespace

// "trainloop": fp32 with the loss-aware sampler on a 2-step cosine diffusion (it warms up
// after 5 steps, so the last step's loss weights come from every rank's gathered losses),
// microbatches of 1 (gradients accumulate locally and are averaged once). Each step prints
//   rank R step K hash H ema E err X ema_err Y sampler S
// with X, Y the relative differences from the one-process reference.
// "trainloop-fp16": the reference's fp16 scheme; at the second step rank 1's batch is NaN,
// and both ranks must skip the step and lower the loss scale together.
int train_loop_worker(DistContext& ctx, const std::string& scenario) {
  const bool fp16 = scenario == "trainloop-fp16";
  const int64_t world = ctx.world_size(), rank = ctx.rank(), global = kLocalBatch * world;
  const int steps = fp16 ? 2 : 6;
  DiffusionConfig dc = tiny_diffusion();
  if (!fp16) {
    dc.diffusion_steps = 2;
    dc.noise_schedule = "cosine";
  }
  const GaussianDiffusion diffusion = create_gaussian_diffusion(dc);
  const std::string sampler = fp16 ? "uniform" : "loss-second-moment";
  TrainConfig c;
  // Adam turns rounding differences in near-zero gradients into lr-sized steps; 1e-4 keeps
  // them well under the 1e-5 tolerance while a wrong gradient would miss it by far.
  c.lr = 1e-4;
  c.ema_rate = "0.9";
  c.device = "cpu";
  c.use_fp16 = fp16;
  Logger quiet("", true);

  // The ranks start from different weights: the loop must broadcast rank 0's.
  at::manual_seed(1 + 100 * static_cast<uint64_t>(rank));
  TrainConfig dist_config = c;
  dist_config.batch_size = kLocalBatch;
  dist_config.microbatch = 1;
  TrainLoop loop(create_model(tiny_model()), diffusion,
                 create_named_schedule_sampler(sampler, diffusion), nullptr, dist_config, quiet,
                 at::kCPU, &ctx);
  at::manual_seed(1);
  TrainConfig ref_config = c;
  ref_config.batch_size = global;
  Logger ref_quiet("", true);
  TrainLoop ref(create_model(tiny_model()), diffusion,
                create_named_schedule_sampler(sampler, diffusion), nullptr, ref_config, ref_quiet,
                at::kCPU);

  for (int k = 0; k < steps; ++k) {
    const TrainBatch g = global_batch(k, global, diffusion.num_timesteps());
    TrainBatch mine = rank_slice(g, rank);
    if (fp16 && k == 1 && rank == 1) mine.images = at::full_like(mine.images, NAN);
    const auto before = clone_tensors(loop.master_params());
    loop.run_step(mine);
    if (!(fp16 && k == 1)) ref.run_step(g);
    const std::vector<double> w = loop.schedule_sampler().weights();
    std::printf(
        "rank %lld step %d hash %llx ema %llx err %.3g ema_err %.3g sampler %llx scale %g changed "
        "%d\n",
        static_cast<long long>(rank), k,
        static_cast<unsigned long long>(hash_of(loop.master_params())),
        static_cast<unsigned long long>(hash_of(loop.ema_params()[0])),
        rel_diff(loop.master_params(), ref.master_params()),
        rel_diff(loop.ema_params()[0], ref.ema_params()[0]),
        static_cast<unsigned long long>(hash_of({at::tensor(w, at::kDouble)})),
        loop.lg_loss_scale(), rel_diff(loop.master_params(), before) > 0 ? 1 : 0);
    if (!fp16) {
      const std::vector<double> rw = ref.schedule_sampler().weights();
      std::printf("rank %lld step %d sampler_err %.3g uniform %d\n", static_cast<long long>(rank),
                  k, rel_error(at::tensor(w, at::kDouble), at::tensor(rw, at::kDouble)),
                  w.front() == w.back() ? 1 : 0);
    }
  }
  if (!fp16) {
    // The logged loss is the mean over every rank's samples: the reference's, to rounding.
    loop.dump_logs();
    ref.dump_logs();
    std::printf("rank %lld loss %.9g ref_loss %.9g\n", static_cast<long long>(rank),
                loop.last_logged().at("loss"), ref.last_logged().at("loss"));
  }
  std::printf("rank %lld ok\n", static_cast<long long>(rank));
  return 0;
}
// ---- parent side -----------------------------------------------------------------------

namespace {

TEST(DistTrain, TwoRanksMatchOneProcessOnTheConcatenatedBatch) {
  TempDir dir;
  LaunchedRanks run = start_workers("trainloop", 2, dir.path());
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  const std::regex step_line(
      "rank (\\d) step (\\d+) hash (\\w+) ema (\\w+) err (\\S+) ema_err (\\S+) sampler (\\w+)");
  const std::regex sampler_line("rank (\\d) step (\\d+) sampler_err (\\S+) uniform (\\d)");
  std::map<int, std::vector<std::string>> hashes;  // step -> "params ema sampler" per rank
  std::map<int, int> uniform;
  for (int r = 0; r < 2; ++r) {
    const std::string out = run.ranks[r]->out();
    EXPECT_CONTAINS(out, "rank " + std::to_string(r) + " ok");
    for (std::sregex_iterator it(out.begin(), out.end(), step_line), end; it != end; ++it) {
      const auto& m = *it;
      hashes[std::stoi(m[2])].push_back(m.str(3) + " " + m.str(4) + " " + m.str(7));
      EXPECT_LE(std::stod(m[5]), 1e-5) << m.str();  // parameters
      EXPECT_LE(std::stod(m[6]), 1e-5) << m.str();  // EMA
    }
    for (std::sregex_iterator it(out.begin(), out.end(), sampler_line), end; it != end; ++it) {
      EXPECT_LE(std::stod((*it)[3]), 1e-6) << it->str();
      uniform[std::stoi((*it)[2])] = std::stoi((*it)[4]);
    }
    std::smatch loss;
    ASSERT_TRUE(std::regex_search(out, loss, std::regex("loss (\\S+) ref_loss (\\S+)"))) << out;
    EXPECT_NEAR(std::stod(loss[1]), std::stod(loss[2]), 1e-5 * std::abs(std::stod(loss[2])));
  }
  ASSERT_EQ(hashes.size(), 6u) << run.describe();
  for (const auto& [step, hs] : hashes) {
    ASSERT_EQ(hs.size(), 2u);
    EXPECT_EQ(hs[0], hs[1]) << "ranks differ after step " << step;
  }
  // The loss-aware sampler warmed up on the gathered losses of both ranks before the last step.
  EXPECT_EQ(uniform[0], 1);
  EXPECT_EQ(uniform[5], 0);
}

TEST(DistTrain, Fp16RanksSkipABadStepTogether) {
  TempDir dir;
  LaunchedRanks run = start_workers("trainloop-fp16", 2, dir.path());
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  const std::regex line(
      "rank (\\d) step (\\d+) hash (\\w+) ema (\\w+) err (\\S+) ema_err \\S+ sampler \\w+ "
      "scale (\\S+) changed (\\d)");
  std::map<int, std::vector<std::string>> state;
  for (int r = 0; r < 2; ++r) {
    const std::string out = run.ranks[r]->out();
    for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
      const auto& m = *it;
      const int step = std::stoi(m[2]);
      state[step].push_back(m.str(3) + " " + m.str(4) + " " + m.str(6) + " " + m.str(7));
      EXPECT_LE(std::stod(m[5]), 1e-3) << m.str();  // fp16 sums round differently
      EXPECT_EQ(m.str(7), step == 1 ? "0" : "1") << m.str();
    }
  }
  ASSERT_EQ(state.size(), 2u) << run.describe();
  for (const auto& [step, s] : state) {
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0], s[1]) << "ranks differ after step " << step;
  }
  EXPECT_CONTAINS(state[1][0], " 19.001 0");  // 20 + 0.001 - 1: both lowered the scale
}

}  // namespace
}  // namespace idiff::test
