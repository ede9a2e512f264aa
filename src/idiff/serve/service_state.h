// SamplingService's inside (sampling_service.cpp runs it, service_report.cpp describes it).
#pragma once

#include "idiff/drivers/sample_stages.h"
#include "idiff/serve/sampling_service.h"

#include <ATen/core/Generator.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace idiff::serve {

using Clock = std::chrono::steady_clock;

struct Job {
  std::string id;
  SampleConfig settings;
  std::string key;  // batch_key(settings)
  std::string format;
  at::Generator gen;
  at::Tensor init;  // SDEdit image [1, C, size, size], or undefined
  std::vector<int64_t> classes;
  std::shared_ptr<SamplingPlan> plan;

  JobState state = JobState::Queued;
  bool in_flight = false;  // one of its parts is in the running batch
  int64_t next_start = 0;  // its next sample to schedule
  int64_t position = 0;    // the queue position its last "queued" event told
  int64_t steps_done = 0, steps_total = 0, calls_per_image = 0;
  std::vector<at::Tensor> images, labels;  // finished parts, in order
  at::Tensor all_images, all_labels;       // once completed
  std::string error;
  Clock::time_point submitted, started, finished;
  std::chrono::system_clock::time_point submitted_wall;
  std::vector<JobEvent> events;
  int64_t bytes = 0;  // what its results hold

  bool ended() const {
    return state == JobState::Completed || state == JobState::Failed ||
           state == JobState::Cancelled;
  }
  int64_t chunk() const;  // the size of its next part
};

struct Metrics {
  int64_t submitted = 0, completed = 0, failed = 0, cancelled = 0, rejected_full = 0,
          rejected_bad = 0, evicted = 0, images = 0, batches = 0;
  std::vector<int64_t> batch_sizes;        // counts per batch_size_bounds bucket
  int64_t batch_images = 0;                // the sum of the batch sizes
  std::vector<int64_t> seconds_per_image;  // job (end - submit) / images, per seconds_bounds
  double seconds_per_image_sum = 0;
  std::deque<std::pair<Clock::time_point, int64_t>> recent;  // images made, last minute
};

struct SamplingService::State {
  SampleJob base;
  ServeLimits limits;
  c10::Device device = c10::kCPU;
  SamplingModels models;
  int64_t parameters = 0;
  Clock::time_point started = Clock::now();

  mutable std::mutex mu;
  mutable std::condition_variable changed;  // the queue, a job's events or state changed
  std::map<std::string, std::shared_ptr<Job>> jobs;
  std::deque<std::shared_ptr<Job>> queue;  // jobs with parts to make, in turn order
  std::map<std::string, std::shared_ptr<SamplingPlan>> plans;  // by batch key
  std::deque<std::string> plan_order;                          // least recently made first
  std::vector<std::shared_ptr<Job>> running;                   // the batch's jobs
  bool accepting = true, stopping = false;
  int64_t result_bytes = 0;
  Metrics metrics;
  std::thread worker;
};

// The upper bounds of the batch-size and seconds-per-image histograms.
const std::vector<double>& batch_size_bounds();
const std::vector<double>& seconds_bounds();

// A job's JSON (service_report.cpp); the lock is held.
nlohmann::json describe_job(const SamplingService::State& st, const Job& job);
// Jobs ahead of `job` in the queue (running ones included); the lock is held.
int64_t position_of(const SamplingService::State& st, const Job& job);
// Adds an event and wakes the waiters; the lock is held.
void push_event(SamplingService::State& st, Job& job, std::string type, nlohmann::json data);

}  // namespace idiff::serve
