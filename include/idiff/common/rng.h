// Seeding the default random generators for a while without changing them for the caller.
// Module initialisers and ops such as dropout and randn_like draw from LibTorch's default
// generators, which take no generator argument; the library seeds them where the
// reference calls th.manual_seed, and puts their states back afterwards, so a program that
// embeds idiff keeps its own random streams.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace idiff {

// A fresh seed from the system's entropy, below 10^9 so a person can retype it: what
// `idiff sample` and the server use when no seed is given (and then report).
uint64_t random_seed();

class ScopedSeed {
 public:
  // Seeds the default CPU generator, and the default generator of `device` when it is a
  // GPU, with `seed`; the destructor restores their states.
  ScopedSeed(uint64_t seed, c10::Device device);
  ~ScopedSeed();
  ScopedSeed(const ScopedSeed&) = delete;
  ScopedSeed& operator=(const ScopedSeed&) = delete;

 private:
  std::vector<std::pair<at::Generator, at::Tensor>> saved_;
};

}  // namespace idiff
