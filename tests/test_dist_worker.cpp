// The rank side of the multi-process dist tests. test_dist_multiprocess.cpp starts this
// test binary again (directly, or through mpirun) with IDIFF_TEST_DIST_WORKER=<scenario>;
// a static initializer below then runs the scenario instead of GoogleTest and exits.
// Each worker checks what it can know by itself (every rank's inputs are generated from
// the rank number) and prints result lines for the parent to compare across ranks:
//   "rank R ok ..."  "rank R FAIL: ..."  "rank R step K hash H err E"
// An idiff::Error ends the worker as the CLI would: "idiff: error: ..." and exit 1.
#include "test_dist_util.h"

#include "idiff/common/error.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/grad_reducer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace idiff::test {
namespace {

struct Checker {
  int64_t rank;
  int failures = 0;
  void expect(bool ok, const std::string& what) {
    if (!ok) {
      std::printf("rank %lld FAIL: %s\n", static_cast<long long>(rank), what.c_str());
      ++failures;
    }
  }
};

at::Generator generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// Rank r's tensors for the collective checks: mixed sizes (with a 64 KiB bucket size
// they span several buckets), a double group, a non-contiguous and an empty tensor.
std::vector<at::Tensor> rank_tensors(int64_t rank) {
  auto gen = generator(1000 + static_cast<uint64_t>(rank));
  const auto f = at::TensorOptions(at::kFloat);
  std::vector<at::Tensor> ts;
  for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{
           {}, {1}, {7}, {3, 5}, {1000}, {40000}, {17, 33}, {200, 300}, {5000}, {0}}) {
    ts.push_back(at::randn(shape, gen, f));
  }
  ts.push_back(at::randn({64, 64}, gen, f).t());  // non-contiguous
  ts.push_back(at::randn({9000}, gen, f.dtype(at::kDouble)));
  ts.push_back(at::randn({3}, gen, f.dtype(at::kDouble)));
  return ts;
}

uint64_t hash_tensors(const std::vector<at::Tensor>& ts) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const auto& t : ts) {
    const at::Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

int collectives(DistContext& ctx) {
  Checker c{ctx.rank()};
  const int64_t world = ctx.world_size();
  ctx.set_bucket_bytes(64 * 1024);

  // broadcast from the last rank: every rank ends with its tensors, bit for bit.
  std::vector<at::Tensor> b = rank_tensors(ctx.rank());
  ctx.broadcast(b, world - 1);
  const auto root = rank_tensors(world - 1);
  for (size_t i = 0; i < b.size(); ++i)
    c.expect(b[i].equal(root[i]), "broadcast tensor " + std::to_string(i));

  // all_reduce_mean: the mean of every rank's tensors, dtypes and strides kept.
  std::vector<at::Tensor> g = rank_tensors(ctx.rank());
  const at::Tensor strided = g[10];
  ctx.all_reduce_mean(g);
  c.expect(g[10].data_ptr() == strided.data_ptr() && !g[10].is_contiguous(), "mean kept in place");
  std::vector<at::Tensor> expected = rank_tensors(0);
  for (int64_t r = 1; r < world; ++r) {
    const auto other = rank_tensors(r);
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = expected[i] + other[i];
  }
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const at::Tensor want = expected[i] / static_cast<double>(world);
    c.expect(g[i].scalar_type() == want.scalar_type(), "mean dtype " + std::to_string(i));
    if (want.numel() > 0) {
      worst = std::max(worst, ((g[i] - want).norm() / want.norm()).item<double>());
    }
  }
  c.expect(worst <= 1e-6, "all_reduce_mean relative error " + std::to_string(worst));

  // all_gather: rank order, equal shapes, then a different first dimension, then scalars.
  auto make = [](int64_t r, int64_t rows) {
    return at::arange(rows * 4, at::kFloat).reshape({rows, 4}) + 100.0 * static_cast<double>(r);
  };
  const auto same = ctx.all_gather(make(ctx.rank(), 3));
  c.expect(static_cast<int64_t>(same.size()) == world, "all_gather count");
  for (int64_t r = 0; r < world && r < static_cast<int64_t>(same.size()); ++r) {
    c.expect(same[r].equal(make(r, 3)), "all_gather order, rank " + std::to_string(r));
  }
  const auto ragged = ctx.all_gather(make(ctx.rank(), ctx.rank() + 1));
  for (int64_t r = 0; r < world && r < static_cast<int64_t>(ragged.size()); ++r) {
    c.expect(ragged[r].equal(make(r, r + 1)), "ragged all_gather, rank " + std::to_string(r));
  }
  const auto losses =
      ctx.all_gather(at::scalar_tensor(0.5 * static_cast<double>(ctx.rank()), at::kDouble));
  for (int64_t r = 0; r < world && r < static_cast<int64_t>(losses.size()); ++r) {
    c.expect(losses[r].dim() == 0 && losses[r].item<double>() == 0.5 * static_cast<double>(r),
             "scalar all_gather");
  }

  // all_reduce_sum, barrier.
  const at::Tensor s =
      ctx.all_reduce_sum(at::full({2, 2}, static_cast<double>(ctx.rank() + 1), at::kLong));
  c.expect(s.equal(at::full({2, 2}, world * (world + 1) / 2, at::kLong)), "all_reduce_sum");
  ctx.barrier();

  // Shapes that differ beyond the first dimension are an error on every rank, and the
  // group stays usable.
  try {
    ctx.all_gather(at::zeros({2, 3 + ctx.rank()}));
    c.expect(false, "no error for mismatched all_gather shapes");
  } catch (const Error& e) {
    c.expect(std::string(e.what()).find("only the first dimension may differ") != std::string::npos,
             std::string("mismatch message: ") + e.what());
  }
  ctx.barrier();

  if (c.failures == 0) {
    std::printf("rank %lld ok %s mean %llx\n", static_cast<long long>(ctx.rank()),
                ctx.describe().c_str(), static_cast<unsigned long long>(hash_tensors(g)));
  }
  return c.failures == 0 ? 0 : 2;
}

// A small MLP trained with AdamW: data-parallel over the ranks (each rank its slice of
// the batch, two microbatches each) against one process on the whole batch; the
// overlapped GradReducer against average_gradients, bit for bit.
struct Mlp {
  std::vector<at::Tensor> params;  // W1 [16, 8], b1 [16], W2 [4, 16], b2 [4]
  Mlp() {
    auto gen = generator(7);
    for (std::vector<int64_t> shape :
         std::vector<std::vector<int64_t>>{{16, 8}, {16}, {4, 16}, {4}}) {
      params.push_back((at::randn(shape, gen, at::kFloat) * 0.3).set_requires_grad(true));
    }
  }
  at::Tensor forward(const at::Tensor& x) const {
    return at::linear(at::tanh(at::linear(x, params[0], params[1])), params[2], params[3]);
  }
};

constexpr int64_t kTrainBatch = 8;
constexpr int kTrainSteps = 4;

std::pair<at::Tensor, at::Tensor> train_batch(int step) {
  auto gen = generator(100 + static_cast<uint64_t>(step));
  at::Tensor x = at::randn({kTrainBatch, 8}, gen, at::kFloat);
  at::Tensor y = at::randn({kTrainBatch, 4}, gen, at::kFloat);
  return {x, y};
}

torch::optim::AdamW make_adamw(const Mlp& m) {
  return torch::optim::AdamW(m.params, torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
}

int train(DistContext& ctx) {
  Checker c{ctx.rank()};
  const int64_t world = ctx.world_size();
  const int64_t local = kTrainBatch / world;  // rows per rank (--batch_size is per rank)
  const int64_t micro = local / 2;

  Mlp reference;
  auto reference_opt = make_adamw(reference);
  // Two data-parallel copies: gradients averaged after the backward (average_gradients)
  // and during it (GradReducer, 4 buckets of at most 256 bytes).
  Mlp model, overlap;
  {
    at::NoGradGuard no_grad;  // ranks start apart; sync_params must make them equal
    for (auto& p : model.params) p.add_(static_cast<double>(ctx.rank()));
    for (auto& p : overlap.params) p.sub_(static_cast<double>(ctx.rank()));
  }
  sync_params(ctx, model.params);
  sync_params(ctx, overlap.params);
  auto opt = make_adamw(model);
  auto overlap_opt = make_adamw(overlap);
  ctx.set_bucket_bytes(256);
  GradReducer reducer(ctx, overlap.params);
  c.expect(reducer.num_buckets() == 4,
           "GradReducer buckets: " + std::to_string(reducer.num_buckets()));
  c.expect(hash_tensors(model.params) == hash_tensors(reference.params), "sync_params");
  c.expect(hash_tensors(overlap.params) == hash_tensors(reference.params), "sync_params (overlap)");
  size_t launched_early = 0;

  for (int step = 0; step < kTrainSteps; ++step) {
    const auto [x, y] = train_batch(step);
    reference_opt.zero_grad();
    at::mse_loss(reference.forward(x), y).backward();
    reference_opt.step();

    opt.zero_grad();
    for (int64_t m = 0; m < local / micro; ++m) {
      const int64_t start = ctx.rank() * local + m * micro;
      const at::Tensor loss =
          at::mse_loss(model.forward(x.narrow(0, start, micro)), y.narrow(0, start, micro));
      (loss * (static_cast<double>(micro) / static_cast<double>(local))).backward();
    }
    average_gradients(ctx, model.params);
    opt.step();

    overlap_opt.zero_grad();
    for (int64_t m = 0; m < local / micro; ++m) {
      const int64_t start = ctx.rank() * local + m * micro;
      if (m == local / micro - 1) reducer.prepare_for_backward();
      const at::Tensor loss =
          at::mse_loss(overlap.forward(x.narrow(0, start, micro)), y.narrow(0, start, micro));
      (loss * (static_cast<double>(micro) / static_cast<double>(local))).backward();
    }
    launched_early += reducer.launched_during_backward();
    reducer.finish();
    overlap_opt.step();
    c.expect(hash_tensors(overlap.params) == hash_tensors(model.params),
             "GradReducer differs from average_gradients at step " + std::to_string(step));

    double err = 0;
    for (size_t i = 0; i < model.params.size(); ++i) {
      err = std::max(err,
                     ((model.params[i] - reference.params[i]).norm() / reference.params[i].norm())
                         .item<double>());
    }
    std::printf("rank %lld step %d hash %llx err %.3g\n", static_cast<long long>(ctx.rank()), step,
                static_cast<unsigned long long>(hash_tensors(model.params)), err);
  }
  // Every bucket starts from the hooks, inside the backward; none waits for finish().
  c.expect(launched_early == 4 * kTrainSteps,
           "buckets launched during the backward: " + std::to_string(launched_early));
  if (c.failures == 0) std::printf("rank %lld ok\n", static_cast<long long>(ctx.rank()));
  return c.failures == 0 ? 0 : 2;
}

// Rank 1 dies (SIGKILL) or stalls after a first barrier; rank 0 keeps averaging.
int fault(DistContext& ctx, bool die, double timeout) {
  ctx.barrier();
  if (ctx.rank() == 1) {
    if (die) ::kill(getpid(), SIGKILL);
    std::this_thread::sleep_for(std::chrono::duration<double>(5 * timeout));
    return 0;
  }
  for (int i = 0; i < 100; ++i) {
    std::vector<at::Tensor> g{at::ones({1000})};
    ctx.all_reduce_mean(g);
  }
  std::printf("rank %lld: no error\n", static_cast<long long>(ctx.rank()));
  return 3;
}

int run_worker(const std::string& scenario) {
  const char* t = std::getenv(kDistTimeoutVar);
  const double timeout = t != nullptr ? std::atof(t) : 30.0;
  try {
    auto ctx = DistContext::from_environment(at::kCPU, timeout);
    if (scenario == "collectives") return collectives(*ctx);
    if (scenario == "train") return train(*ctx);
    if (scenario == "die" || scenario == "stall") return fault(*ctx, scenario == "die", timeout);
    if (scenario.rfind("trainloop", 0) == 0) return train_loop_worker(*ctx, scenario);
    if (scenario == "join") {
      ctx->barrier();
      std::printf("rank %lld ok\n", static_cast<long long>(ctx->rank()));
      return 0;
    }
    std::fprintf(stderr, "unknown dist worker scenario '%s'\n", scenario.c_str());
    return 4;
  } catch (const Error& e) {
    std::fprintf(stderr, "idiff: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

void maybe_run_dist_worker() {
  const char* scenario = std::getenv(kDistWorkerVar);
  if (scenario == nullptr) return;
  const int code = run_worker(scenario);
  std::fflush(stdout);
  std::fflush(stderr);
  std::exit(code);
}

namespace {
// Runs before GoogleTest's main; returns at once unless this process is a worker.
[[maybe_unused]] const bool worker_hook = (maybe_run_dist_worker(), true);
}  // namespace

}  // namespace idiff::test
