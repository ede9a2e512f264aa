// idiff_bench: idiff's throughput next to the Python reference's, in the same run.
//
//   idiff_bench --device cpu --reference .ref/improved-diffusion
//   idiff_bench --device cuda --case cifar10:train:128:bf16 --case cifar10:sample:256
//
// Each --case (config:what:batch[:fp32|bf16][:ckpt]) is measured --repeats times; with
// --reference the reference (bench/reference_bench.py --serve in a child process, same
// device and thread count) is measured in turn with idiff, alternating which goes first,
// and the table gives the median images/s of each and the range of the per-round ratios.
// FLOPs are counted analytically (idiff/model/inspect/flop_count.h); peak memory is the
// resident-set growth on the CPU and the caching allocator's peak on CUDA.
#include "bench_workloads.h"
#include "op_profile.h"
#include "reference_process.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/model/attention.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>

namespace idiff::bench {
namespace {

struct Row {
  Case c;
  std::vector<Measurement> idiff;
  std::vector<nlohmann::json> ref;
};

double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

std::vector<std::string> default_cases(const c10::Device& device) {
  if (device.is_cuda()) {  // the GPU yardsticks (docs/performance.md)
    return {"cifar10:train:128",
            "cifar10:train:128:bf16",
            "cifar10:sample:256",
            "cifar10:sample:256:bf16",
            "cifar10:ddim:256",
            "imagenet64:train:32",
            "imagenet64:train:32:fp32:ckpt"};
  }
  return {"tiny:train:16",   "tiny:sample:16",   "tiny:ddim:16",
          "cifar10:train:4", "cifar10:sample:2", "cifar10:ddim:2"};
}

void print_table(const std::vector<Row>& rows, bool with_ref, std::ostream& out) {
  out << "| config | work | batch | precision | idiff img/s | idiff TFLOP/s | idiff peak MiB |";
  if (with_ref)
    out << " reference img/s | reference peak MiB | idiff / reference (median, range) |";
  out << "\n|---|---|---|---|---|---|---|" << (with_ref ? "---|---|---|" : "") << "\n";
  for (const Row& r : rows) {
    std::vector<double> ips, tflops, peak, ref_ips, ref_peak, ratios;
    for (size_t i = 0; i < r.idiff.size(); ++i) {
      const Measurement& m = r.idiff[i];
      ips.push_back(m.images_per_sec);
      tflops.push_back(m.flops / m.seconds / 1e12);
      peak.push_back(static_cast<double>(m.peak_bytes) / (1 << 20));
      if (i < r.ref.size() && !r.ref[i].contains("error")) {
        const double ref = r.ref[i].at("images_per_sec").get<double>();
        ref_ips.push_back(ref);
        ref_peak.push_back(r.ref[i].at("peak_bytes").get<double>() / (1 << 20));
        ratios.push_back(m.images_per_sec / ref);
      }
    }
    out << "| " << r.c.config << " | " << r.c.what << " | " << r.c.batch << " | " << r.c.precision
        << (r.c.use_checkpoint ? " ckpt" : "") << " | " << fmt("%.4g", median(ips)) << " | "
        << fmt("%.3f", median(tflops)) << " | " << fmt("%.0f", max_of(peak)) << " |";
    if (with_ref) {
      if (ratios.empty()) {
        out << " failed | | |";
      } else {
        const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
        out << " " << fmt("%.4g", median(ref_ips)) << " | " << fmt("%.0f", max_of(ref_peak))
            << " | " << fmt("%.2fx", median(ratios)) << " (" << fmt("%.2f", *lo) << "-"
            << fmt("%.2f", *hi) << ") |";
      }
    }
    out << "\n";
  }
}

int run(int argc, char** argv) {
  CLI::App app{
      "idiff_bench: idiff's training and sampling throughput, side by side with the "
      "Python reference"};
  std::string device_spec = "auto", reference, python = IDIFF_BENCH_PYTHON, json_path;
  std::string attention = "auto";
  std::vector<std::string> case_specs;
  Settings s;
  int repeats = 3, threads = 0, profile = 0;
  app.add_option("--device", device_spec, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--case", case_specs,
                 "config:what:batch[:fp32|bf16][:ckpt], config tiny|cifar10|imagenet64, what "
                 "train|sample|ddim; repeatable (default: a set for the device)");
  app.add_option("--steps", s.steps, "timed training steps")->capture_default_str();
  app.add_option("--warmup", s.warmup, "untimed training steps first")->capture_default_str();
  app.add_option("--sample_steps", s.sample_steps, "respaced steps of p_sample_loop")
      ->capture_default_str();
  app.add_option("--ddim_steps", s.ddim_steps, "steps of ddim_sample_loop")->capture_default_str();
  app.add_option("--repeats", repeats, "rounds per case")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0: LibTorch's default)")
      ->capture_default_str();
  app.add_option("--attention", attention,
                 "idiff's attention: auto, einsum (the reference's), bmm, sdpa")
      ->capture_default_str();
  app.add_option("--profile", profile,
                 "before the rounds, profile one extra run of each case (both sides) and print "
                 "the N operators with the most self time");
  std::string clock = "wall";
  bool no_tuning = false;
  app.add_option("--clock", clock,
                 "wall, or cpu: the process's CPU time (steadier on a shared CPU; meant for "
                 "--threads 1)")
      ->capture_default_str();
  std::string adamw = "auto";
  app.add_option("--adamw", adamw, "AdamW: auto (fused), fused, single")->capture_default_str();
  app.add_flag("--channels_last", s.channels_last, "weights and inputs in channels-last layout");
  bool no_cuda_graph = false;
  app.add_flag("--no_cuda_graph", no_cuda_graph,
               "CUDA: sample eagerly instead of replaying graphs");
  app.add_flag("--no_tuning", no_tuning,
               "leave out idiff's process-wide tuning (CPU malloc, cuDNN autotuning)");
  app.add_option(
      "--reference", reference,
      "a checkout of the reference: measure it in the same run (needs torch in --python)");
  app.add_option("--python", python, "the Python that runs bench/reference_bench.py")
      ->capture_default_str();
  app.add_option("--json", json_path, "also write every measurement as JSON lines to this file");
  CLI11_PARSE(app, argc, argv);

  IDIFF_REQUIRE(repeats >= 1 && s.steps >= 1 && s.warmup >= 0, ConfigError,
                "--repeats and --steps must be positive, --warmup not negative");
  s.attention = parse_attention_impl(attention, "--attention");
  s.device = resolve_device(device_spec);
  IDIFF_REQUIRE(clock == "wall" || clock == "cpu", ConfigError, "--clock must be wall or cpu");
  s.cpu_clock = clock == "cpu";
  s.cuda_graph = !no_cuda_graph;
  IDIFF_REQUIRE(adamw == "auto" || adamw == "fused" || adamw == "single", ConfigError,
                "--adamw must be auto, fused or single");
  s.adamw = adamw == "single"  ? AdamWOptions::Impl::Single
            : adamw == "fused" ? AdamWOptions::Impl::Fused
                               : AdamWOptions::Impl::Auto;
  if (!no_tuning) tune_for_device(s.device);
  if (threads > 0) at::set_num_threads(threads);
  threads = at::get_num_threads();
  if (case_specs.empty()) case_specs = default_cases(s.device);
  std::vector<Row> rows;
  for (const auto& spec : case_specs) rows.push_back({Case::parse(spec), {}, {}});

  std::optional<ReferenceProcess> ref;
  if (!reference.empty()) {
    ReferenceOptions o;
    o.python = python.empty() ? "python3" : python;
    o.script = std::string(IDIFF_SOURCE_DIR) + "/bench/reference_bench.py";
    o.ref_dir = reference;
    o.threads = threads;
    o.device = s.device.str();
    ref.emplace(o);
  }
  std::ofstream json;
  if (!json_path.empty()) json.open(json_path);

  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::localtime(&now));
  std::cout << "idiff_bench " << date << ": " << describe_device(s.device) << ", " << cpu_model()
            << ", " << threads << " threads, " << clock << " clock, idiff tuning "
            << (no_tuning ? "off" : "on") << ", AdamW " << adamw
            << (s.channels_last ? ", channels-last" : "")
            << (s.device.is_cuda() ? (s.cuda_graph ? ", CUDA graphs" : ", no CUDA graphs") : "")
            << ", LibTorch " << TORCH_VERSION << ", attention " << attention << ", " << repeats
            << " rounds, " << s.steps << " train steps (+" << s.warmup << " warm-up), sampling "
            << s.sample_steps << " steps, DDIM " << s.ddim_steps << " steps" << std::endl;

  IdiffRunner runner(s);
  for (Row& row : rows) {
    if (profile > 0) {
      std::cerr << "== idiff " << row.c.spec() << " profile\n";
      profile_ops([&] { runner.run(row.c); }, profile, std::cerr, s.device.is_cuda());
    }
    for (int rep = 0; rep < repeats; ++rep) {
      nlohmann::json req = {{"config", row.c.config},
                            {"what", row.c.what},
                            {"batch", row.c.batch},
                            {"steps", s.steps},
                            {"warmup", s.warmup},
                            {"sample_steps", s.sample_steps},
                            {"ddim_steps", s.ddim_steps},
                            {"precision", row.c.precision},
                            {"use_checkpoint", row.c.use_checkpoint},
                            {"clock", clock}};
      if (ref && profile > 0 && rep == 0) {
        std::cerr << "== reference " << row.c.spec() << " profile" << std::endl;
        nlohmann::json preq = req;
        preq["profile"] = profile;
        ref->request(preq);
      }
      // Alternate who goes first, so drift in the machine's load hits both alike.
      const bool ref_first = ref && rep % 2 == 1;
      if (ref_first) row.ref.push_back(ref->request(req));
      row.idiff.push_back(runner.run(row.c));
      if (ref && !ref_first) row.ref.push_back(ref->request(req));
      const Measurement& m = row.idiff.back();
      std::cerr << row.c.spec() << " round " << rep + 1 << ": idiff "
                << fmt("%.2f", m.images_per_sec) << " img/s";
      if (ref) {
        const auto& r = row.ref.back();
        if (r.contains("error")) {
          std::cerr << ", reference failed: " << r.at("error").get<std::string>();
        } else {
          std::cerr << ", reference " << fmt("%.4g", r.at("images_per_sec").get<double>())
                    << " img/s";
        }
      }
      std::cerr << std::endl;
      if (json) {
        json << nlohmann::json{{"impl", "idiff"},
                               {"case", row.c.spec()},
                               {"round", rep},
                               {"images_per_sec", m.images_per_sec},
                               {"seconds", m.seconds},
                               {"flops", m.flops},
                               {"peak_bytes", m.peak_bytes},
                               {"threads", threads}}
                    .dump()
             << "\n";
        if (ref)
          json << nlohmann::json{{"case", row.c.spec()},
                                 {"round", rep},
                                 {"reference", row.ref.back()}}
                      .dump()
               << "\n";
      }
    }
  }
  print_table(rows, ref.has_value(), std::cout);
  return 0;
}

}  // namespace
}  // namespace idiff::bench

int main(int argc, char** argv) {
  try {
    return idiff::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "idiff_bench: " << e.what() << std::endl;
    return 1;
  }
}
