// Trains example_model() for a few steps on synthetic images (grey discs on black) with
// idiff's TrainLoop, and writes the reference's checkpoint files into OUT_DIR.
//
//   train_steps OUT_DIR [STEPS]
#include "example_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: train_steps OUT_DIR [STEPS]\n";
    return 2;
  }
  try {
    idiff::TrainConfig train;
    train.batch_size = 8;
    train.lr = 1e-3;
    train.ema_rate = "0.99";
    train.log_interval = 5;
    train.max_steps = argc > 2 ? std::stoll(argv[2]) : 10;
    train.save_interval = train.max_steps;

    const c10::Device device(c10::kCPU);
    idiff::UNetModel model = idiff::create_model(example_model());
    const idiff::SpacedDiffusion diffusion = idiff::create_gaussian_diffusion(example_diffusion());
    auto sampler = idiff::create_named_schedule_sampler("uniform", diffusion);
    idiff::Logger logger(argv[1]);

    // Batch `step`: discs of random centre and radius, [N, 1, 32, 32] in [-1, 1]; the
    // generator is seeded by the step, so a resumed run would see the same data.
    idiff::BatchFn data = [&](int64_t step) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(step);
      const at::Tensor centre = at::rand({train.batch_size, 2, 1, 1}, gen) * 16 + 8;
      const at::Tensor radius = at::rand({train.batch_size, 1, 1, 1}, gen) * 8 + 4;
      const at::Tensor r = at::arange(32, at::kFloat);
      const at::Tensor dy = r.view({1, 1, 32, 1}) - centre.narrow(1, 0, 1);
      const at::Tensor dx = r.view({1, 1, 1, 32}) - centre.narrow(1, 1, 1);
      idiff::TrainBatch batch;
      batch.images = ((dy * dy + dx * dx) < radius * radius).to(at::kFloat) * 2 - 1;
      return batch;
    };

    idiff::TrainLoop loop(model, diffusion, std::move(sampler), data, train, logger, device);
    loop.run_loop();
    std::cout << "trained " << loop.step() << " steps, loss " << loop.last_logged().at("loss")
              << "; checkpoints in " << argv[1] << "\n";
  } catch (const std::exception& e) {
    std::cerr << "train_steps: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
