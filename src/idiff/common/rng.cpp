#include "idiff/common/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <mutex>
#include <random>

namespace idiff {

uint64_t random_seed() {
  std::random_device device;
  return ((uint64_t{device()} << 32) | device()) % 1000000000;
}

ScopedSeed::ScopedSeed(uint64_t seed, c10::Device device) {
  std::vector<at::Generator> generators{at::detail::getDefaultCPUGenerator()};
  if (!device.is_cpu()) generators.push_back(at::globalContext().defaultGenerator(device));
  for (at::Generator& g : generators) {
    std::lock_guard<std::mutex> lock(g.mutex());
    saved_.emplace_back(g, g.get_state());
    g.set_current_seed(seed);
  }
}

ScopedSeed::~ScopedSeed() {
  for (auto& [g, state] : saved_) {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  }
}

}  // namespace idiff
