// distributed/ in one process: reading the launcher's variables (good and bad), gradient
// buckets, the single-process context, and a real process group of one rank (what a
// WORLD_SIZE=1 launch gets). The multi-process runs are in test_dist_multiprocess.cpp.
#include "test_dist_util.h"
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/distributed/bucket.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/dist_env.h"
#include "idiff/distributed/grad_reducer.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <map>

namespace idiff::test {

// The launcher's variables as read from `vars` instead of the process environment.
EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

void check_world_size_one(const c10::Device& device, const std::string& backend) {
  SCOPED_TRACE(device.str());
  const DistEnv env = read_dist_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "1"}}));
  auto ctx = DistContext::from_env(env, device, 10.0);
  EXPECT_TRUE(ctx->is_distributed());
  EXPECT_EQ(ctx->backend_name(), backend);
  EXPECT_CONTAINS(ctx->describe(), backend + " on " + device.str() + ", timeout 10 s");
  ctx->set_bucket_bytes(64);
  const auto on = at::TensorOptions(device);
  std::vector<at::Tensor> ts{at::randn({5, 7}, on), at::randn({3}, on.dtype(at::kDouble)),
                             at::randn({40}, on), at::randn({6}, at::kCPU)};
  std::vector<at::Tensor> before;
  for (const auto& t : ts) before.push_back(t.clone());
  ctx->all_reduce_mean(ts);
  ctx->broadcast(ts);
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(ts[i].device(), before[i].device());
    EXPECT_TRUE(ts[i].equal(before[i])) << i;
  }
  const auto g = ctx->all_gather(ts[0]);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_TRUE(g[0].equal(before[0]));
  EXPECT_TRUE(ctx->all_reduce_sum(ts[2]).equal(before[2]));
  const at::Tensor cpu_sum = ctx->all_reduce_sum(ts[3]);  // a CPU tensor, whatever the backend
  EXPECT_TRUE(cpu_sum.is_cpu());
  EXPECT_TRUE(cpu_sum.equal(before[3]));
  const auto scalars = ctx->all_gather(at::scalar_tensor(2.5, on));
  ASSERT_EQ(scalars.size(), 1u);
  EXPECT_EQ(scalars[0].dim(), 0);
  EXPECT_EQ(scalars[0].item<double>(), 2.5);
  ctx->barrier();

  // Parameters that require grad go through (autograd is off inside).
  at::Tensor w = at::randn({4, 4}, on).set_requires_grad(true);
  sync_params(*ctx, {w});
  (w * w).sum().backward();
  const at::Tensor grad = w.grad().clone();
  at::Tensor unused = at::randn({2}, on).set_requires_grad(true);
  average_gradients(*ctx, {w, unused});
  EXPECT_TRUE(w.grad().equal(grad));
  ASSERT_TRUE(unused.grad().defined());
  EXPECT_TRUE(unused.grad().equal(at::zeros({2}, on)));
}

}  // namespace idiff::test

namespace idiff {
namespace {

using test::check_world_size_one;
using test::fake_env;

// The ConfigError message of reading these variables ("" when none is thrown).
std::string env_error(std::map<std::string, std::string> vars) {
  try {
    read_dist_env(fake_env(std::move(vars)));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(DistEnv, NoVariablesIsOneProcess) {
  const DistEnv e = read_dist_env(fake_env({{"MASTER_ADDR", "10.0.0.1"}}));
  EXPECT_FALSE(e.launched());
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.describe(), "single process");
}

TEST(DistEnv, Torchrun) {
  const DistEnv e = read_dist_env(fake_env({{"RANK", "5"},
                                            {"WORLD_SIZE", "8"},
                                            {"LOCAL_RANK", "1"},
                                            {"MASTER_ADDR", "node0"},
                                            {"MASTER_PORT", "29500"}}));
  EXPECT_EQ(e.launcher, "torchrun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_EQ(e.describe(), "rank 5 of 8 (local rank 1, torchrun, rendezvous tcp://node0:29500)");
}

TEST(DistEnv, TorchrunAgentStore) {
  DistEnv e = read_dist_env(fake_env({{"RANK", "0"},
                                      {"WORLD_SIZE", "2"},
                                      {"MASTER_ADDR", "h"},
                                      {"MASTER_PORT", "29500"},
                                      {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                      {"TORCHELASTIC_RESTART_COUNT", "3"}}));
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.restart_count, 3);
  e = read_dist_env(fake_env({{"RANK", "0"},
                              {"WORLD_SIZE", "2"},
                              {"MASTER_ADDR", "h"},
                              {"MASTER_PORT", "29500"},
                              {"TORCHELASTIC_USE_AGENT_STORE", "False"}}));
  EXPECT_FALSE(e.agent_store);
}

TEST(DistEnv, MpirunWithTcpOrFile) {
  DistEnv e = read_dist_env(fake_env({{"OMPI_COMM_WORLD_RANK", "1"},
                                      {"OMPI_COMM_WORLD_SIZE", "2"},
                                      {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                      {"MASTER_ADDR", "h"},
                                      {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(e.launcher, "mpirun");
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.local_rank, 0);
  EXPECT_EQ(e.master_port, 1234);
  // A shared file wins over MASTER_ADDR/PORT.
  e = read_dist_env(fake_env({{"OMPI_COMM_WORLD_RANK", "0"},
                              {"OMPI_COMM_WORLD_SIZE", "2"},
                              {"IDIFF_DIST_FILE", "/shared/rdzv"},
                              {"MASTER_ADDR", "h"},
                              {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(e.file_path, "/shared/rdzv");
  EXPECT_EQ(e.local_rank, 0);  // defaults to the rank
  EXPECT_EQ(e.describe(), "rank 0 of 2 (local rank 0, mpirun, rendezvous file:///shared/rdzv)");
}

TEST(DistEnv, TorchrunWinsOverMpirun) {
  const DistEnv e = read_dist_env(fake_env({{"RANK", "0"},
                                            {"WORLD_SIZE", "1"},
                                            {"OMPI_COMM_WORLD_RANK", "3"},
                                            {"OMPI_COMM_WORLD_SIZE", "4"}}));
  EXPECT_EQ(e.launcher, "torchrun");
  EXPECT_EQ(e.world_size, 1);
}

TEST(DistEnv, WorldSizeOneNeedsNoRendezvous) {
  const DistEnv e = read_dist_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "1"}}));
  EXPECT_TRUE(e.launched());
  EXPECT_EQ(e.describe(), "rank 0 of 1 (local rank 0, torchrun, rendezvous in-process store)");
}

TEST(DistEnv, BadVariablesNameTheVariable) {
  const std::map<std::string, std::string> tcp{{"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  auto with = [&](std::map<std::string, std::string> v) {
    v.insert(tcp.begin(), tcp.end());
    return v;
  };
  EXPECT_EQ(env_error(with({{"RANK", "0"}, {"WORLD_SIZE", "2"}})), "");
  EXPECT_CONTAINS(env_error(with({{"RANK", "0"}})), "WORLD_SIZE is not");
  EXPECT_CONTAINS(env_error(with({{"WORLD_SIZE", "2"}})), "RANK is not");
  EXPECT_CONTAINS(env_error(with({{"RANK", "one"}, {"WORLD_SIZE", "2"}})),
                  "RANK='one' is not an integer");
  EXPECT_CONTAINS(env_error(with({{"RANK", "1x"}, {"WORLD_SIZE", "2"}})), "RANK='1x'");
  EXPECT_CONTAINS(env_error(with({{"RANK", "2"}, {"WORLD_SIZE", "2"}})), "RANK=2");
  EXPECT_CONTAINS(env_error(with({{"RANK", "-1"}, {"WORLD_SIZE", "2"}})), "RANK=-1");
  EXPECT_CONTAINS(env_error(with({{"RANK", "0"}, {"WORLD_SIZE", "0"}})), "WORLD_SIZE=0");
  EXPECT_CONTAINS(env_error(with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "-3"}})),
                  "LOCAL_RANK=-3");
  EXPECT_CONTAINS(
      env_error(
          {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
      "MASTER_PORT=70000");
  EXPECT_CONTAINS(
      env_error(
          {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "http"}}),
      "MASTER_PORT='http'");
  EXPECT_CONTAINS(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
                  "MASTER_ADDR is set but MASTER_PORT is not");
  EXPECT_CONTAINS(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}),
                  "MASTER_PORT is set but MASTER_ADDR is not");
  EXPECT_CONTAINS(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}}),
                  "neither MASTER_ADDR and MASTER_PORT");
  EXPECT_CONTAINS(env_error({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}}),
                  "mpirun -x MASTER_ADDR");
  EXPECT_CONTAINS(env_error({{"OMPI_COMM_WORLD_RANK", "0"}}), "OMPI_COMM_WORLD_SIZE is not");
  EXPECT_CONTAINS(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"IDIFF_DIST_FILE", ""}}),
                  "IDIFF_DIST_FILE is empty");
}

TEST(DistBucket, PlanGroupsByDtypeAndSize) {
  const auto f = at::TensorOptions(at::kFloat);
  const std::vector<at::Tensor> ts{
      at::zeros({10}, f),                     // 40 bytes
      at::zeros({10}, f.dtype(at::kDouble)),  // 80
      at::zeros({10}, f),                     // 40 -> 80 with the first
      at::zeros({20}, f),                     // 80: would make 160 > 100, new bucket
      at::zeros({100}, f),                    // 400 > 100: a bucket of its own
      at::zeros({2}, f.dtype(at::kDouble)),   // 16 -> 96 with the other double
  };
  const auto buckets = plan_buckets(ts, 100);
  const std::vector<Bucket> expected{{0, 2}, {3}, {1, 5}, {4}};
  std::vector<Bucket> sorted = buckets;
  std::sort(sorted.begin(), sorted.end());
  std::vector<Bucket> sorted_expected = expected;
  std::sort(sorted_expected.begin(), sorted_expected.end());
  EXPECT_EQ(sorted, sorted_expected);
  EXPECT_EQ(plan_buckets(ts, 100), buckets);  // deterministic
}

TEST(DistBucket, FlattenRoundTripsAnyStrides) {
  std::vector<at::Tensor> ts{at::randn({3, 4}).t(), at::randn({}), at::randn({5}),
                             at::randn({0, 2}), at::randn({2, 6}).narrow(1, 1, 3)};
  std::vector<at::Tensor> before;
  for (const auto& t : ts) before.push_back(t.clone());
  const Bucket all{0, 1, 2, 3, 4};
  const at::Tensor flat = flatten_bucket(ts, all);
  ASSERT_EQ(flat.dim(), 1);
  EXPECT_EQ(flat.numel(), 12 + 1 + 5 + 0 + 6);
  EXPECT_TRUE(flat.narrow(0, 0, 12).equal(before[0].reshape(-1)));
  for (auto& t : ts) t.zero_();
  unflatten_bucket(flat * 2, ts, all);
  for (size_t i = 0; i < ts.size(); ++i) EXPECT_TRUE(ts[i].equal(before[i] * 2)) << i;

  // One contiguous tensor is its own buffer: no copy either way.
  std::vector<at::Tensor> one{at::randn({4, 4})};
  const at::Tensor view = flatten_bucket(one, {0});
  EXPECT_EQ(view.data_ptr(), one[0].data_ptr());
  EXPECT_EQ(empty_bucket(one, {0}).data_ptr(), one[0].data_ptr());
  EXPECT_EQ(empty_bucket(ts, all).numel(), flat.numel());
}

TEST(DistContext, SingleProcessCollectivesAreNoOps) {
  std::vector<std::unique_ptr<DistContext>> contexts;
  contexts.push_back(DistContext::single_process(at::kCPU));
  contexts.push_back(DistContext::from_env(DistEnv{}, at::kCPU, 10.0));
  for (auto& ctx : contexts) {
    EXPECT_FALSE(ctx->is_distributed());
    EXPECT_EQ(ctx->rank(), 0);
    EXPECT_EQ(ctx->world_size(), 1);
    EXPECT_TRUE(ctx->is_main());
    EXPECT_EQ(ctx->backend_name(), "none");
    const at::Tensor a = at::randn({3, 2});
    std::vector<at::Tensor> ts{a.clone(), at::randn({7})};
    const at::Tensor b = ts[1].clone();
    ctx->broadcast(ts);
    ctx->all_reduce_mean(ts);
    EXPECT_TRUE(ts[0].equal(a));
    EXPECT_TRUE(ts[1].equal(b));
    const auto gathered = ctx->all_gather(a);
    ASSERT_EQ(gathered.size(), 1u);
    EXPECT_TRUE(gathered[0].equal(a));
    EXPECT_NE(gathered[0].data_ptr(), a.data_ptr());
    EXPECT_TRUE(ctx->all_reduce_sum(a).equal(a));
    ctx->barrier();
  }
}

TEST(DistContext, TimeoutMustBePositive) {
  for (double t : {0.0, -1.0, std::nan("")}) {
    try {
      DistContext::from_env(DistEnv{}, at::kCPU, t);
      ADD_FAILURE() << "no error for timeout " << t;
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(std::string(e.what()), "`dist_timeout`");
    }
  }
}

TEST(DistContext, WorldSizeOneRunsARealGroup) {
  ASSERT_TRUE(DistContext::built_with_gloo()) << "configure with libgloo-dev installed";
  check_world_size_one(c10::Device(c10::kCPU), "gloo");
  if (torch::cuda::is_available()) {
    check_world_size_one(c10::Device(c10::kCUDA, 0),
                         DistContext::built_with_nccl() ? "nccl" : "gloo");
  }
}

// GradReducer on a one-rank group: the hooks launch the buckets during the backward, the
// means (of one rank) are the accumulated gradients, unused parameters get zeros, and
// misuse is reported.
TEST(DistGradReducer, OverlapsAndAveragesOneRank) {
  const DistEnv env = read_dist_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "1"}}));
  auto ctx = DistContext::from_env(env, at::kCPU, 10.0);
  ctx->set_bucket_bytes(100);
  std::vector<at::Tensor> params{at::randn({5}).set_requires_grad(true),      // unused, 20 bytes
                                 at::randn({4, 3}).set_requires_grad(true),   // 48
                                 at::randn({4}).set_requires_grad(true),      // 16
                                 at::randn({2, 4}).set_requires_grad(true)};  // 32
  GradReducer reducer(*ctx, params);
  EXPECT_EQ(reducer.num_buckets(), 2u);  // {2x4, 4, 4x3} and {unused}: reverse order
  auto loss = [&](const at::Tensor& x) {
    return at::linear(at::tanh(at::linear(x, params[1], params[2])), params[3]).pow(2).sum();
  };
  const at::Tensor x1 = at::randn({6, 3}), x2 = at::randn({6, 3});
  loss(x1).backward();  // an earlier microbatch: accumulates only
  EXPECT_EQ(reducer.launched_during_backward(), 0u);
  reducer.prepare_for_backward();
  loss(x2).backward();
  EXPECT_EQ(reducer.launched_during_backward(), 1u);  // the unused parameter's waits for finish
  std::vector<at::Tensor> expected;
  for (int i = 1; i < 4; ++i) expected.push_back(params[i].grad().clone());
  reducer.finish();
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(params[i].grad().equal(expected[i - 1])) << i;
  ASSERT_TRUE(params[0].grad().defined());
  EXPECT_TRUE(params[0].grad().equal(at::zeros({5})));

  // Armed for two backward passes: the second would change gradients already sent.
  reducer.prepare_for_backward();
  loss(x1).backward();
  loss(x2).backward();
  try {
    reducer.finish();
    ADD_FAILURE() << "no error for a gradient that arrived twice";
  } catch (const Error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "received its gradient twice");
  }
  EXPECT_THROW(reducer.finish(), c10::Error);  // not armed
  reducer.prepare_for_backward();
  EXPECT_THROW(reducer.prepare_for_backward(), c10::Error);
}

TEST(DistGradReducer, SingleProcessDoesNothing) {
  auto ctx = DistContext::single_process(at::kCPU);
  at::Tensor w = at::randn({3}).set_requires_grad(true);
  GradReducer reducer(*ctx, {w});
  EXPECT_EQ(reducer.num_buckets(), 0u);
  reducer.prepare_for_backward();
  (w * w).sum().backward();
  reducer.finish();
  EXPECT_TRUE(w.grad().equal(2 * w.detach()));
}

TEST(DistContext, DeviceForLocalRank) {
  const DistEnv single;
  const DistEnv launched = read_dist_env(
      fake_env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}));
  EXPECT_EQ(DistContext::device_for_local_rank("cpu", launched), c10::Device(c10::kCPU));
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(DistContext::device_for_local_rank("auto", single), c10::Device(c10::kCPU));
    EXPECT_EQ(DistContext::device_for_local_rank("auto", launched), c10::Device(c10::kCPU));
    EXPECT_THROW(DistContext::device_for_local_rank("cuda", launched), ConfigError);
  } else {
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    const c10::Device expected(c10::kCUDA, count == 1 ? 0 : 1);
    if (count <= 2) {
      EXPECT_EQ(DistContext::device_for_local_rank("auto", launched), expected);
    }
    EXPECT_EQ(DistContext::device_for_local_rank("cuda:0", launched), c10::Device(c10::kCUDA, 0));
    DistEnv far = launched;
    far.local_rank = 64;
    if (count > 1) {
      EXPECT_THROW(DistContext::device_for_local_rank("auto", far), ConfigError);
    }
  }
  EXPECT_THROW(DistContext::device_for_local_rank("tpu", launched), ConfigError);
}

}  // namespace
}  // namespace idiff
