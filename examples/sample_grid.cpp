// Loads a checkpoint of example_model() and samples a grid of 16 images with DPM-Solver++
// (2M) in 10 model calls, written as a PNG.
//
//   sample_grid CHECKPOINT OUT.png [SEED]
#include "example_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: sample_grid CHECKPOINT OUT.png [SEED]\n";
    return 2;
  }
  try {
    const c10::Device device(c10::kCPU);
    const idiff::ModelConfig config = example_model();
    idiff::UNetModel model = idiff::load_model(config, /*super_res=*/false, argv[1], device);

    idiff::SampleConfig s;
    s.sampler = "dpmpp_2m";
    s.steps = 10;
    const idiff::SamplerSetup setup = idiff::sampler_setup(s, example_diffusion());
    c10::InferenceMode inference;
    const auto solver = idiff::make_solver(
        setup, [&](const at::Tensor& x, const at::Tensor& t) { return model->forward(x, t); });

    idiff::SampleOptions options;
    options.generator =
        at::make_generator<at::CPUGeneratorImpl>(argc > 3 ? std::stoull(argv[3]) : 0);
    options.device = device;
    const std::vector<int64_t> shape = {16, config.image_channels, config.image_size,
                                        config.image_size};
    const at::Tensor x = idiff::run_sampler(*solver, idiff::initial_noise(shape, options), options);
    idiff::write_png(argv[2], idiff::make_grid(idiff::samples_to_uint8(x)));
    std::cout << "16 samples in " << solver->total_model_calls() << " model calls: " << argv[2]
              << "\n";
  } catch (const std::exception& e) {
    std::cerr << "sample_grid: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
