// idiff_serve_load: `idiff serve` under load from N client threads on the loopback (bounded
// in count and time), at each --max_batch, against the same images made by one `idiff
// sample --batch_size 16` process and by one `idiff sample` process per job. Prints a table:
// images/s, latency p50/p95/p99 per job, mean batch size and the server's peak memory.
//
//   idiff_serve_load --model_path ema.pt --clients 8 --jobs 64 --job_images 1 --steps 10
#include "idiff/common/error.h"
#include "idiff/common/strings.h"

#include <httplib.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;
using idiff::str;

struct Options {
  std::string model_path, device = "cpu", max_batches = "1,16", job_images = "1", json;
  int clients = 8, jobs = 64, steps = 10, sequential_jobs = 8, batch_window_ms = 20;
  double time_limit_s = 300;
};

struct Row {
  std::string what;
  double images_per_s = 0, p50 = 0, p95 = 0, p99 = 0, mean_batch = 0, peak_mb = 0;
  int64_t images = 0;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int job_size(const Options& o, int i) {
  return o.job_images == "1-4" ? 1 + i % 4 : std::stoi(o.job_images);
}

// Runs a command to its end; its wall time in seconds (throws when it fails).
double run_timed(const std::string& command) {
  const auto start = Clock::now();
  if (std::system((command + " > /dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("failed: " + command);
  return seconds_since(start);
}

class Server {
 public:
  Server(const Options& o, int max_batch) {
    char path[] = "/tmp/idiff-serve-load-XXXXXX";
    const int fd = mkstemp(path);
    log_ = path;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      const std::vector<std::string> args = {IDIFF_EXE,
                                             "serve",
                                             "--model_path",
                                             o.model_path,
                                             "--port",
                                             "0",
                                             "--device",
                                             o.device,
                                             "--steps",
                                             std::to_string(o.steps),
                                             "--max_batch",
                                             std::to_string(max_batch),
                                             "--batch_window_ms",
                                             std::to_string(o.batch_window_ms),
                                             "--max_queue",
                                             "100000",
                                             "--max_images_per_request",
                                             "64"};
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fd);
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)/");
    for (int i = 0; i < 1200 && port_ == 0; ++i) {
      std::ifstream in(log_);
      std::stringstream ss;
      ss << in.rdbuf();
      std::smatch m;
      const std::string text = ss.str();
      if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (port_ == 0) throw std::runtime_error("the server did not start; see " + log_);
  }
  ~Server() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    std::remove(log_.c_str());
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_;
};

double metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return 0;
  return std::stod(m[1]);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * double(v.size())))];
}

Row load_server(const Options& o, int max_batch) {
  Server server(o, max_batch);
  httplib::Client warm("127.0.0.1", server.port());
  warm.set_read_timeout(600);
  warm.Post("/v1/images/generations", R"({"n": 1, "seed": 0})", "application/json");
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<double> latencies;
  int64_t images = 0;
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", server.port());
      client.set_read_timeout(600);
      for (int i; (i = next++) < o.jobs && seconds_since(start) < o.time_limit_s;) {
        const auto t = Clock::now();
        const int n = job_size(o, i);
        const auto r =
            client.Post("/v1/images/generations", str("{\"n\": ", n, ", \"seed\": ", i + 1, "}"),
                        "application/json");
        if (!r || r->status != 200)
          throw std::runtime_error("a job failed: " + (r ? r->body : "no answer"));
        std::lock_guard<std::mutex> lock(mu);
        latencies.push_back(seconds_since(t));
        images += n;
      }
    });
  }
  for (auto& t : clients) t.join();
  Row row;
  row.what = str("idiff serve --max_batch ", max_batch);
  row.images = images;
  row.images_per_s = double(images) / seconds_since(start);
  row.p50 = percentile(latencies, 0.5);
  row.p95 = percentile(latencies, 0.95);
  row.p99 = percentile(latencies, 0.99);
  const std::string m = warm.Get("/metrics")->body;
  const double batches = metric(m, "idiff_batch_size_count");
  row.mean_batch = batches > 0 ? metric(m, "idiff_batch_size_sum") / batches : 0;
  row.peak_mb = metric(m, "idiff_process_peak_resident_bytes") / 1048576.0;
  return row;
}

std::string sample_command(const Options& o, int n, int seed, int batch) {
  return str(IDIFF_EXE, " sample --model_path '", o.model_path, "' --device ", o.device,
             " --steps ", o.steps, " --num_samples ", n, " --batch_size ", batch, " --seed ", seed,
             " --grid_size 0 -o /tmp/idiff-serve-load-sample");
}

void print(const std::vector<Row>& rows, const Options& o) {
  std::printf("\n%d clients, %d jobs of %s image(s), %d solver steps (unipc), device %s\n\n",
              o.clients, o.jobs, o.job_images.c_str(), o.steps, o.device.c_str());
  std::printf("| %-44s | images | images/s | p50 s | p95 s | p99 s | mean batch | peak MB |\n",
              "setting");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  // The process rows have no per-job latency, batches or server memory: a dash.
  const auto cell = [](double v, const char* format) {
    char text[32] = "—";
    if (v > 0) std::snprintf(text, sizeof(text), format, v);
    return std::string(text);
  };
  for (const Row& r : rows)
    std::printf("| %-44s | %6lld | %8.2f | %5s | %5s | %5s | %10s | %7s |\n", r.what.c_str(),
                static_cast<long long>(r.images), r.images_per_s, cell(r.p50, "%.2f").c_str(),
                cell(r.p95, "%.2f").c_str(), cell(r.p99, "%.2f").c_str(),
                cell(r.mean_batch, "%.1f").c_str(), cell(r.peak_mb, "%.0f").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("idiff serve under load");
  Options o;
  app.add_option("--model_path", o.model_path, "checkpoint (with its flags.json)")->required();
  app.add_option("--device", o.device);
  app.add_option("--clients", o.clients)->check(CLI::Range(1, 256));
  app.add_option("--jobs", o.jobs)->check(CLI::Range(1, 100000));
  app.add_option("--job_images", o.job_images, "1, 2, 4 or 1-4 (cycled)");
  app.add_option("--steps", o.steps)->check(CLI::Range(1, 1000));
  app.add_option("--max_batches", o.max_batches, "the servers to measure, e.g. 1,16");
  app.add_option("--batch_window_ms", o.batch_window_ms);
  app.add_option("--sequential_jobs", o.sequential_jobs, "jobs made by one process each")
      ->check(CLI::Range(0, 1000));
  app.add_option("--time_limit_s", o.time_limit_s, "per server");
  app.add_option("--json", o.json, "also write the rows here");
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<Row> rows;
    std::stringstream batches(o.max_batches);
    for (std::string b; std::getline(batches, b, ',');)
      rows.push_back(load_server(o, std::stoi(b)));
    int64_t total = 0;
    for (int i = 0; i < o.jobs; ++i) total += job_size(o, i);
    Row one;
    one.what = "one idiff sample --batch_size 16 (with load)";
    one.images = total;
    const double startup = run_timed(sample_command(o, 1, 0, 1));
    const double wall = run_timed(sample_command(o, int(total), 0, 16));
    one.images_per_s = double(total) / wall;
    rows.push_back(one);
    Row sampling = one;
    char start_s[32];
    std::snprintf(start_s, sizeof(start_s), "%.2f", startup);
    sampling.what = str("  the same less one process start (", start_s, " s)");
    sampling.images_per_s = double(total) / std::max(1e-3, wall - startup);
    rows.push_back(sampling);
    if (o.sequential_jobs > 0) {
      Row seq;
      seq.what = str("idiff sample per job (first ", o.sequential_jobs, " jobs)");
      double t = 0;
      for (int i = 0; i < std::min(o.sequential_jobs, o.jobs); ++i) {
        seq.images += job_size(o, i);
        t += run_timed(sample_command(o, job_size(o, i), i + 1, 16));
      }
      seq.images_per_s = double(seq.images) / t;
      rows.push_back(seq);
    }
    print(rows, o);
    if (!o.json.empty()) {
      nlohmann::json j = nlohmann::json::array();
      for (const Row& r : rows)
        j.push_back({{"setting", r.what},
                     {"images", r.images},
                     {"images_per_s", r.images_per_s},
                     {"p50_s", r.p50},
                     {"p95_s", r.p95},
                     {"p99_s", r.p99},
                     {"mean_batch", r.mean_batch},
                     {"peak_mb", r.peak_mb}});
      std::ofstream(o.json) << j.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "idiff_serve_load: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
