// The core of `idiff serve`: one resident model, a job table, a queue and a batcher that
// merges the jobs of one setting into shared model calls. No sockets here: the HTTP front
// (src/cli/cmd_serve.cpp) is a thin adapter over this class, and the tests drive it
// directly too.
//
// Determinism: every job draws its labels, x_T and step noise from a generator of its own
// seed, in the order a run of that job alone draws them, and a job larger than
// --max_batch is cut into parts of --max_batch images made one after the other. So a job
// gives the images `idiff sample --seed S --batch_size <max_batch>` gives with the same
// settings, whichever jobs share its batches.
//
// Cancelling: a cancelled job is answered at once and its images are dropped; its rows ride
// along to the end of the batch they are in (the solvers keep per-row history), and a batch
// whose jobs are all cancelled stops at its next step.
#pragma once

#include "idiff/common/logger.h"
#include "idiff/drivers/image_sample.h"
#include "idiff/serve/job_request.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace idiff::serve {

// The queue holds --max_queue jobs (HTTP 429).
class QueueFull : public Error {
 public:
  using Error::Error;
};
// The server is stopping and takes no new jobs (HTTP 503).
class ShuttingDown : public Error {
 public:
  using Error::Error;
};

enum class JobState { Queued, Generating, Completed, Failed, Cancelled };
const char* state_name(JobState state);

struct JobEvent {
  std::string type;  // queued, started, step, done, failed, cancelled
  nlohmann::json data;
};

// A job's images (on the CPU, once completed) and its JSON, taken together.
struct JobOutput {
  JobState state = JobState::Queued;
  std::string format;
  at::Tensor images;           // [N, H, W, C] uint8 (defined once completed)
  at::Tensor labels;           // [N] int64, or undefined
  nlohmann::json description;  // as job_json
};

class SamplingService {
 public:
  // Loads the model (and classifier) of `base`'s flags on `device` and starts the worker.
  // `base.sample` holds the defaults of every job field. ConfigError/FileError as `idiff
  // sample` gives them for bad flags.
  SamplingService(SampleJob base, ServeLimits limits, c10::Device device, Logger& logger);
  ~SamplingService();
  SamplingService(const SamplingService&) = delete;
  SamplingService& operator=(const SamplingService&) = delete;

  struct Accepted {
    std::string id;
    int64_t queue_position = 0;  // jobs ahead of it
  };
  // RequestError for settings a sampling run would refuse; QueueFull; ShuttingDown.
  Accepted submit(const JobRequest& request);
  // The job as JSON (state, progress, timings, result links); nullopt: unknown or evicted.
  std::optional<nlohmann::json> job_json(const std::string& id) const;
  // False when there is no such job or it has already ended.
  bool cancel(const std::string& id);
  // Events [from, ...) of a job, waiting up to `wait` for the first; `ended`: the job has
  // ended and these are its last. nullopt: unknown job.
  std::optional<std::vector<JobEvent>> events(const std::string& id, size_t from,
                                              std::chrono::milliseconds wait, bool& ended) const;
  std::optional<JobOutput> output(const std::string& id) const;
  // Blocks until the job ends (at most `wait`); its output then (taken at once, so a result
  // evicted right after is still returned).
  std::optional<JobOutput> wait(const std::string& id, std::chrono::milliseconds wait) const;

  std::string metrics_text() const;  // Prometheus text format
  nlohmann::json model_json() const;
  nlohmann::json health_json() const;
  const SampleConfig& defaults() const;
  const ServeLimits& limits() const;

  // Takes no new jobs, cancels the queued ones, lets running ones finish for up to
  // `grace_s` seconds, cancels the rest and stops the worker.
  void shutdown(double grace_s);

  struct State;  // service_state.h

 private:
  std::unique_ptr<State> state_;
};

}  // namespace idiff::serve
