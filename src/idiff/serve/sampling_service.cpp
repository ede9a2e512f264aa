#include "idiff/serve/service_state.h"

#include "idiff/common/rng.h"
#include "idiff/common/strings.h"
#include "idiff/data/image_datasets.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <random>

namespace idiff::serve {
namespace {

// A batch whose jobs were all cancelled (or the server stopping) ends at its next step.
struct BatchAbandoned {};

std::string new_job_id() {
  static std::mutex mu;
  static std::mt19937_64 gen{std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32)};
  std::lock_guard<std::mutex> lock(mu);
  char id[20];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(gen()));
  return id;
}

}  // namespace

int64_t Job::chunk() const {
  return std::min(settings.num_samples - next_start, settings.batch_size);
}

int64_t position_of(const SamplingService::State& st, const Job& job) {
  int64_t ahead = 0;
  for (const auto& j : st.queue) {
    if (j.get() == &job) return ahead;
    ++ahead;
  }
  return 0;
}

void push_event(SamplingService::State& st, Job& job, std::string type, nlohmann::json data) {
  job.events.push_back({std::move(type), std::move(data)});
  st.changed.notify_all();
}

namespace {

using State = SamplingService::State;

// The plan of a setting, made once over the resident models (and kept for the next jobs of
// that setting, at most 16 settings). Errors are the request's. The lock is held.
std::shared_ptr<SamplingPlan> plan_for(State& st, const SampleConfig& s, const std::string& key) {
  const auto found = st.plans.find(key);
  if (found != st.plans.end()) return found->second;
  SampleJob job = st.base;
  job.sample = s;
  job.sample.init_image = "";
  job.sample.classes = "";
  try {
    check_sample_job(job);
    Logger quiet("", true);
    auto plan = std::make_shared<SamplingPlan>(
        plan_sampling(job, sampler_setup(s, job.diffusion), st.models, st.device, quiet));
    st.plans[key] = plan;
    st.plan_order.push_back(key);
    if (st.plan_order.size() > 16) {
      st.plans.erase(st.plan_order.front());
      st.plan_order.pop_front();
    }
    return plan;
  } catch (const RequestError&) {
    throw;
  } catch (const Error& e) {
    // The sampling checks name flags as `flag`; a request names fields.
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '`', '\'');
    throw RequestError(message);
  }
}

void finish(State& st, Job& job, JobState state, const std::string& error = "") {
  job.state = state;
  job.finished = Clock::now();
  job.error = error;
  job.in_flight = false;
  st.queue.erase(std::remove_if(st.queue.begin(), st.queue.end(),
                                [&](const auto& j) { return j.get() == &job; }),
                 st.queue.end());
  Metrics& m = st.metrics;
  if (state == JobState::Completed) {
    ++m.completed;
    job.all_images = at::cat(job.images);
    if (!job.labels.empty()) job.all_labels = at::cat(job.labels);
    job.images.clear();
    job.labels.clear();
    job.bytes =
        job.all_images.numel() + (job.all_labels.defined() ? job.all_labels.numel() * 8 : 0);
    st.result_bytes += job.bytes;
    const double per_image = std::chrono::duration<double>(job.finished - job.submitted).count() /
                             double(job.settings.num_samples);
    const auto& bounds = seconds_bounds();
    const size_t b = std::lower_bound(bounds.begin(), bounds.end(), per_image) - bounds.begin();
    ++m.seconds_per_image[std::min(b, bounds.size())];
    m.seconds_per_image_sum += per_image;
    push_event(st, job, "done", describe_job(st, job));
  } else {
    job.images.clear();
    job.labels.clear();
    ++(state == JobState::Failed ? m.failed : m.cancelled);
    push_event(st, job, state == JobState::Failed ? "failed" : "cancelled", {{"error", error}});
  }
}

// Drops finished jobs older than --result_ttl_s, then the oldest while the results hold
// more than --max_results_mb. The lock is held.
void evict(State& st) {
  const auto now = Clock::now();
  const auto ttl = std::chrono::duration<double>(st.limits.result_ttl_s);
  std::vector<std::shared_ptr<Job>> done;
  for (const auto& [id, job] : st.jobs) {
    if (job->ended()) done.push_back(job);
  }
  std::sort(done.begin(), done.end(),
            [](const auto& a, const auto& b) { return a->finished < b->finished; });
  const int64_t max_bytes = st.limits.max_results_mb << 20;
  for (const auto& job : done) {
    if (now - job->finished <= ttl && st.result_bytes <= max_bytes) break;
    st.result_bytes -= job->bytes;
    ++st.metrics.evicted;
    st.jobs.erase(job->id);
  }
}

// Images the queue's ready jobs of this setting would put in one batch.
int64_t ready_images(const State& st, const std::string& key) {
  int64_t n = 0;
  for (const auto& j : st.queue) {
    if (!j->in_flight && j->key == key) n += j->chunk();
  }
  return n;
}

// The next batch: the first ready job's setting, then every ready job of that setting whose
// next part fits, in queue order. The lock is held.
std::vector<std::shared_ptr<Job>> take_batch(State& st) {
  std::vector<std::shared_ptr<Job>> batch;
  int64_t room = st.limits.max_batch;
  std::string key;
  for (const auto& j : st.queue) {
    if (j->in_flight || (!key.empty() && j->key != key) || j->chunk() > room) continue;
    key = j->key;
    room -= j->chunk();
    batch.push_back(j);
  }
  for (const auto& j : batch) {
    j->in_flight = true;
    if (j->state == JobState::Queued) {
      j->state = JobState::Generating;
      j->started = Clock::now();
      push_event(st, *j, "started", {{"batch_images", st.limits.max_batch - room}});
    }
  }
  // The jobs still waiting hear their new place in the queue.
  int64_t position = -1;
  for (const auto& j : st.queue) {
    ++position;
    if (j->state == JobState::Queued && position != j->position) {
      j->position = position;
      push_event(st, *j, "queued", {{"queue_position", position}});
    }
  }
  return batch;
}

void record_batch(State& st, int64_t images) {
  Metrics& m = st.metrics;
  ++m.batches;
  m.batch_images += images;
  const auto& bounds = batch_size_bounds();
  const size_t b = std::lower_bound(bounds.begin(), bounds.end(), double(images)) - bounds.begin();
  ++m.batch_sizes[std::min(b, bounds.size())];
}

// The step callback of a batch: every live job's progress, and the end of a batch no one
// waits for any more. The lock is taken here.
void on_step(State& st, const std::vector<std::shared_ptr<Job>>& batch) {
  std::lock_guard<std::mutex> lock(st.mu);
  bool anyone = false;
  for (const auto& j : batch) {
    if (j->ended()) continue;
    anyone = true;
    ++j->steps_done;
    const double elapsed = std::chrono::duration<double>(Clock::now() - j->started).count();
    const double left = elapsed / double(j->steps_done) * double(j->steps_total - j->steps_done);
    push_event(st, *j, "step",
               {{"step", j->steps_done}, {"of", j->steps_total}, {"seconds_left", left}});
  }
  if (!anyone) throw BatchAbandoned{};
}

// Runs one batch outside the lock and hands each job its rows. The lock is held on entry
// and on return.
void run_batch(State& st, std::unique_lock<std::mutex>& lock,
               const std::vector<std::shared_ptr<Job>>& batch) {
  std::vector<BatchSegment> parts;
  int64_t images = 0;
  for (const auto& j : batch) {
    BatchSegment part;
    part.start = j->next_start;
    part.n = j->chunk();
    part.gen = &j->gen;
    part.seed = j->settings.seed;
    part.classes = j->classes;
    part.init = j->init;
    parts.push_back(part);
    images += part.n;
  }
  const std::shared_ptr<SamplingPlan> plan = batch.front()->plan;
  st.running = batch;
  record_batch(st, images);
  lock.unlock();
  BatchImages out;
  std::string error;
  try {
    out = sample_segments(
        *plan, parts, [&](const SampleStep&) { on_step(st, batch); }, st.metrics.batches);
  } catch (const BatchAbandoned&) {
  } catch (const std::exception& e) {
    error = e.what();
  }
  lock.lock();
  st.running.clear();
  int64_t row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Job& j = *batch[i];
    const int64_t n = parts[i].n;
    j.in_flight = false;
    if (j.ended()) {
      row += n;
      continue;
    }
    if (!error.empty() || !out.finite.defined()) {
      finish(st, j, JobState::Failed, error.empty() ? "the batch was stopped" : error);
    } else if (!out.finite.narrow(0, row, n).all().item<bool>()) {
      finish(st, j, JobState::Failed,
             "the samples hold NaN or infinity (model " + j.settings.model_path + ")");
    } else {
      j.images.push_back(out.uint8.narrow(0, row, n).clone());
      if (out.labels.numel() > 0) j.labels.push_back(out.labels.narrow(0, row, n).clone());
      j.next_start += n;
      st.metrics.images += n;
      auto& recent = st.metrics.recent;
      recent.emplace_back(Clock::now(), n);
      while (recent.front().first < Clock::now() - std::chrono::seconds(60)) recent.pop_front();
      if (j.next_start == j.settings.num_samples) {
        finish(st, j, JobState::Completed);
      } else {  // its next part waits its turn behind the others
        st.queue.erase(std::find(st.queue.begin(), st.queue.end(), batch[i]));
        st.queue.push_back(batch[i]);
      }
    }
    row += n;
  }
  st.changed.notify_all();
}

void worker_loop(State& st) {
  std::unique_lock<std::mutex> lock(st.mu);
  while (true) {
    const auto ready = [&] {
      return std::any_of(st.queue.begin(), st.queue.end(),
                         [](const auto& j) { return !j->in_flight; });
    };
    st.changed.wait_for(lock, std::chrono::seconds(1), [&] { return st.stopping || ready(); });
    evict(st);
    if (!ready()) {
      if (st.stopping) return;
      continue;
    }
    // Company for the first ready job: wait up to --batch_window_ms for a full batch.
    std::string key;
    for (const auto& j : st.queue) {
      if (!j->in_flight) {
        key = j->key;
        break;
      }
    }
    st.changed.wait_for(lock, std::chrono::milliseconds(st.limits.batch_window_ms), [&] {
      return st.stopping || ready_images(st, key) >= st.limits.max_batch;
    });
    const std::vector<std::shared_ptr<Job>> batch = take_batch(st);
    if (!batch.empty()) run_batch(st, lock, batch);
  }
}

}  // namespace

SamplingService::SamplingService(SampleJob base, ServeLimits limits, c10::Device device,
                                 Logger& logger)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  IDIFF_REQUIRE(limits.max_batch >= 1 && limits.max_queue >= 1 &&
                    limits.max_images_per_request >= 1 && limits.batch_window_ms >= 0,
                ConfigError,
                "`max_batch`, `max_queue` and `max_images_per_request` must be at "
                "least 1 and `batch_window_ms` at least 0");
  base.sample.batch_size = limits.max_batch;
  base.sample.num_samples = 1;
  check_sample_job(base);
  sampler_setup(base.sample, base.diffusion);  // the default setting, checked before loading
  st.base = std::move(base);
  st.limits = limits;
  st.device = device;
  st.models = load_sampling_models(st.base, device, logger);
  st.parameters = parameter_count(*st.models.model);
  st.metrics.batch_sizes.assign(batch_size_bounds().size() + 1, 0);
  st.metrics.seconds_per_image.assign(seconds_bounds().size() + 1, 0);
  {
    std::lock_guard<std::mutex> lock(st.mu);
    plan_for(st, st.base.sample, batch_key(st.base.sample));  // the defaults' plan, checked
  }
  st.worker = std::thread([&st] { worker_loop(st); });
}

SamplingService::~SamplingService() {
  shutdown(0);
}

SamplingService::Accepted SamplingService::submit(const JobRequest& request) {
  State& st = *state_;
  auto job = std::make_shared<Job>();
  job->settings = request.settings;
  job->settings.batch_size = st.limits.max_batch;
  if (!request.seed_given) job->settings.seed = random_seed();
  job->key = batch_key(job->settings);
  job->format = request.format;
  job->gen = at::make_generator<at::CPUGeneratorImpl>(job->settings.seed);
  // Checked as `idiff sample` checks --class (the plan is made without it).
  SampleJob check = st.base;
  check.sample = job->settings;
  check.sample.init_image = request.init_png.empty() ? "" : "request";
  try {
    check_sample_job(check);
    job->classes = parse_int_list(job->settings.classes, "`class`");
    if (!request.init_png.empty()) {
      const ModelConfig& m = st.base.model;
      job->init =
          init_image_tensor(decode_image_bytes({request.init_png.begin(), request.init_png.end()},
                                               "the image of field 'init_image'"),
                            m.image_size, m.image_channels, "field 'init_image'");
    }
  } catch (const Error& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '`', '\'');
    std::lock_guard<std::mutex> lock(st.mu);
    ++st.metrics.rejected_bad;
    throw RequestError(message);
  }
  std::lock_guard<std::mutex> lock(st.mu);
  if (!st.accepting) throw ShuttingDown("the server is shutting down and takes no new jobs");
  int64_t live = 0;
  for (const auto& [id, j] : st.jobs) live += !j->ended();
  if (live >= st.limits.max_queue) {
    ++st.metrics.rejected_full;
    throw QueueFull(str("the queue is full (", live, " jobs, --max_queue ", st.limits.max_queue,
                        "); retry later"));
  }
  try {
    job->plan = plan_for(st, job->settings, job->key);
  } catch (const RequestError&) {
    ++st.metrics.rejected_bad;
    throw;
  }
  const int64_t parts = (job->settings.num_samples + st.limits.max_batch - 1) / st.limits.max_batch;
  job->steps_total = parts * job->plan->solver->num_steps();
  job->calls_per_image = job->plan->solver->total_model_calls();
  do {
    job->id = new_job_id();
  } while (st.jobs.count(job->id) != 0);
  job->submitted = Clock::now();
  job->submitted_wall = std::chrono::system_clock::now();
  st.jobs[job->id] = job;
  st.queue.push_back(job);
  ++st.metrics.submitted;
  const int64_t position = position_of(st, *job);
  job->position = position;
  push_event(st, *job, "queued", {{"queue_position", position}});
  return {job->id, position};
}

bool SamplingService::cancel(const std::string& id) {
  State& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  const auto found = st.jobs.find(id);
  if (found == st.jobs.end() || found->second->ended()) return false;
  finish(st, *found->second, JobState::Cancelled, "cancelled");
  return true;
}

void SamplingService::shutdown(double grace_s) {
  State& st = *state_;
  std::unique_lock<std::mutex> lock(st.mu);
  st.accepting = false;
  for (const auto& [id, job] : st.jobs) {
    if (job->state == JobState::Queued) finish(st, *job, JobState::Cancelled, "server shutdown");
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(grace_s));
  st.changed.wait_until(lock, deadline, [&] { return st.queue.empty(); });
  for (const auto& [id, job] : st.jobs) {
    if (!job->ended()) finish(st, *job, JobState::Cancelled, "server shutdown");
  }
  st.stopping = true;
  st.changed.notify_all();
  lock.unlock();
  if (st.worker.joinable()) st.worker.join();
}

}  // namespace idiff::serve
