// idiff_bench_eval: the FID Inception's throughput and the memory of scoring a large set.
//
//   idiff_bench_eval --device cpu                       features/s for a batch of 64
//   idiff_bench_eval --device cuda --batch 256 --images 50000
//
// 1. features/s: --repeats timed forward passes of --batch images (--image_size, random
//    uint8, resized to 299x299 inside, as `idiff eval` does) after one warm-up; the
//    weights are random unless --inception_path is given (the time does not depend on
//    them). Peak memory of one pass beside it.
// 2. a streamed set: an npz of --images random images is written to a temporary file and
//    embedded batch by batch as `idiff eval` does; the peak memory is the process's whole
//    pipeline (reading, statistics, the features and logits it keeps). On the CPU the
//    network is replaced in this part by a stand-in that returns features of the same
//    shape (50,000 Inception passes take hours on a few cores; the network's own memory
//    per batch is part 1's), unless --full_network.
#include "peak_memory.h"

#include "idiff/common/device.h"
#include "idiff/eval/evaluator.h"
#include "idiff/io/npz.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#ifdef IDIFF_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <unistd.h>

namespace idiff::bench {
namespace {

void sync(const c10::Device& d) {
#ifdef IDIFF_WITH_CUDA
  if (d.is_cuda()) c10::cuda::device_synchronize();
#endif
  (void)d;
}

double mib(int64_t bytes) {
  return double(bytes) / (1 << 20);
}

int run(int argc, char** argv) {
  std::string device_spec = "auto", inception_path;
  int64_t batch = 64, repeats = 3, image_size = 32, images = 50000;
  bool full_network = false;
  CLI::App app{"idiff_bench_eval: FID Inception features/s and streamed-set memory"};
  app.add_option("--device", device_spec, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch", batch, "images per forward pass")->capture_default_str();
  app.add_option("--repeats", repeats, "timed passes")->capture_default_str();
  app.add_option("--image_size", image_size, "side of the input images")->capture_default_str();
  app.add_option("--images", images, "images in the streamed set (0: skip)")->capture_default_str();
  app.add_option("--inception_path", inception_path, "real weights (default: random)");
  app.add_flag("--full_network", full_network, "stream through the network on the CPU too");
  CLI11_PARSE(app, argc, argv);

  const c10::Device device = resolve_device(device_spec);
  std::cout << "device: " << describe_device(device) << ", intra-op threads "
            << at::get_num_threads() << "\n";
  FIDInceptionV3 net =
      inception_path.empty() ? FIDInceptionV3() : load_fid_inception(inception_path, device);
  net->to(device);
  net->eval();
  c10::InferenceMode guard;

  // 1. features/s
  const at::Tensor x =
      at::randint(0, 256, {batch, 3, image_size, image_size}, at::kByte).to(device).to(at::kFloat) /
      255;
  net->forward(x);
  sync(device);
  double best = 1e30, total = 0;
  int64_t peak = 0;
  for (int64_t i = 0; i < repeats; ++i) {
    PeakMemory mem(device);
    const auto t0 = std::chrono::steady_clock::now();
    const InceptionOutputs out = net->forward(x);
    sync(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    peak = std::max(peak, mem.peak_bytes());
    best = std::min(best, s);
    total += s;
  }
  std::printf(
      "\n| device | batch | input | s/batch (best, mean of %lld) | features/s | peak memory of a "
      "pass |\n",
      static_cast<long long>(repeats));
  std::printf("| --- | --- | --- | --- | --- | --- |\n");
  std::printf("| %s | %lld | %lldx%lld | %.3f, %.3f | %.1f | %.0f MiB |\n", device.str().c_str(),
              static_cast<long long>(batch), static_cast<long long>(image_size),
              static_cast<long long>(image_size), best, total / repeats, batch / best, mib(peak));
  if (images <= 0) return 0;

  // 2. a streamed set of `images` images
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("idiff_bench_eval_" + std::to_string(::getpid()) + ".npz"))
                               .string();
  {
    TensorMap m;
    m.insert("arr_0", at::randint(0, 256, {images, image_size, image_size, 3}, at::kByte));
    write_npz(path, m);
  }
  const double file_mib = mib(static_cast<int64_t>(std::filesystem::file_size(path)));
  const bool stand_in = device.is_cpu() && !full_network;
  // The stand-in: pool-shaped features from a fixed projection of the 8x8 thumbnail.
  const at::Tensor proj = at::randn({3 * 8 * 8, 2048}).to(device);
  const at::Tensor head = at::randn({2048, 1008}).to(device);
  FeatureFn fn = [&](const at::Tensor& im) -> InceptionOutputs {
    if (!stand_in) return net->forward(im);
    InceptionOutputs o;
    o.pool = at::matmul(at::adaptive_avg_pool2d(im, {8, 8}).flatten(1), proj);
    o.logits = at::matmul(o.pool, head);
    return o;
  };
  auto source = ImageSource::open(path, "--samples");
  PeakMemory mem(device);
  const auto t0 = std::chrono::steady_clock::now();
  const FeatureStats stats = embed_images(*source, fn, device, batch, true, "streamed set");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t peak_stream = mem.peak_bytes();
  std::filesystem::remove(path);
  std::printf(
      "\n| images | npz size | network | time | peak memory (%s) | of which features + logits kept "
      "|\n",
      device.is_cpu() ? "resident-set growth" : "CUDA allocator");
  std::printf("| --- | --- | --- | --- | --- | --- |\n");
  std::printf("| %lld | %.0f MiB | %s | %.1f s | %.0f MiB | %.0f MiB |\n",
              static_cast<long long>(stats.count), file_mib,
              stand_in ? "stand-in (CPU)" : "FIDInceptionV3", s, mib(peak_stream),
              mib(stats.features.nbytes() + stats.logits.nbytes()));
  return 0;
}

}  // namespace
}  // namespace idiff::bench

int main(int argc, char** argv) {
  try {
    return idiff::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "idiff_bench_eval: error: " << e.what() << "\n";
    return 1;
  }
}
