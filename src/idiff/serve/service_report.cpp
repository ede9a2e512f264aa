// What SamplingService tells: a job's JSON and events, its output, /v1/models, /health and
// the Prometheus metrics.
#include "idiff/serve/service_state.h"

#include "idiff/common/strings.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/distributed/rank_agreement.h"

#include <fstream>
#include <sstream>

namespace idiff::serve {
namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// VmRSS and VmHWM of this process in bytes (Linux's /proc/self/status; 0 elsewhere).
std::pair<int64_t, int64_t> process_memory() {
  std::ifstream in("/proc/self/status");
  std::string line;
  int64_t rss = 0, peak = 0;
  while (std::getline(in, line)) {
    std::istringstream is(line);
    std::string name;
    int64_t kb = 0;
    is >> name >> kb;
    if (name == "VmRSS:") rss = kb * 1024;
    if (name == "VmHWM:") peak = kb * 1024;
  }
  return {rss, peak};
}

void histogram(std::ostringstream& os, const std::string& name, const std::string& help,
               const std::vector<double>& bounds, const std::vector<int64_t>& counts, double sum) {
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    os << name << "_bucket{le=\"" << bounds[i] << "\"} " << cumulative << "\n";
  }
  cumulative += counts.back();
  os << name << "_bucket{le=\"+Inf\"} " << cumulative << "\n"
     << name << "_sum " << sum << "\n"
     << name << "_count " << cumulative << "\n";
}

}  // namespace

const char* state_name(JobState state) {
  switch (state) {
    case JobState::Queued:
      return "queued";
    case JobState::Generating:
      return "generating";
    case JobState::Completed:
      return "completed";
    case JobState::Failed:
      return "failed";
    case JobState::Cancelled:
      return "cancelled";
  }
  return "?";
}

const std::vector<double>& batch_size_bounds() {
  static const std::vector<double> b = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  return b;
}

const std::vector<double>& seconds_bounds() {
  static const std::vector<double> b = {0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100};
  return b;
}

nlohmann::json describe_job(const SamplingService::State& st, const Job& job) {
  const SampleConfig& s = job.settings;
  const SamplingPlan& plan = *job.plan;
  nlohmann::json j = {{"id", job.id},
                      {"state", state_name(job.state)},
                      {"num_samples", s.num_samples},
                      {"seed", s.seed},
                      {"sampler", plan.setup.solver.name},
                      {"steps", plan.solver->num_steps()},
                      {"schedule", plan.setup.schedule_name},
                      {"model_calls_per_image", job.calls_per_image},
                      {"progress",
                       {{"steps_done", job.steps_done},
                        {"steps_total", job.steps_total},
                        {"images_done", job.next_start}}}};
  if (job.state == JobState::Queued) j["queue_position"] = position_of(st, job);
  const auto now = Clock::now();
  const auto start = job.state == JobState::Queued ? now : job.started;
  const auto end = job.ended() ? job.finished : now;
  j["timings"] = {
      {"queued_s", seconds((job.state == JobState::Queued ? now : start) - job.submitted)},
      {"generating_s", job.state == JobState::Queued ? 0.0 : seconds(end - start)},
      {"total_s", seconds(end - job.submitted)}};
  if (!job.error.empty()) j["error"] = job.error;
  if (job.state == JobState::Completed) {
    const std::string base = "/v1/jobs/" + job.id;
    j["npz"] = base + "/samples.npz";
    nlohmann::json images = nlohmann::json::array();
    for (int64_t k = 0; k < s.num_samples; ++k) images.push_back(str(base, "/images/", k, ".png"));
    j["images"] = images;
    j["format"] = job.format;
    if (job.all_labels.defined()) {
      j["labels"] =
          std::vector<int64_t>(job.all_labels.data_ptr<int64_t>(),
                               job.all_labels.data_ptr<int64_t>() + job.all_labels.numel());
    }
  }
  return j;
}

std::optional<nlohmann::json> SamplingService::job_json(const std::string& id) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  const auto found = state_->jobs.find(id);
  if (found == state_->jobs.end()) return std::nullopt;
  return describe_job(*state_, *found->second);
}

std::optional<std::vector<JobEvent>> SamplingService::events(const std::string& id, size_t from,
                                                             std::chrono::milliseconds wait,
                                                             bool& ended) const {
  std::unique_lock<std::mutex> lock(state_->mu);
  const auto found = state_->jobs.find(id);
  if (found == state_->jobs.end()) return std::nullopt;
  const std::shared_ptr<Job> job = found->second;  // kept even if evicted meanwhile
  state_->changed.wait_for(lock, wait, [&] { return job->events.size() > from; });
  ended = job->ended();
  if (from >= job->events.size()) return std::vector<JobEvent>();
  return std::vector<JobEvent>(job->events.begin() + static_cast<std::ptrdiff_t>(from),
                               job->events.end());
}

std::optional<JobOutput> SamplingService::output(const std::string& id) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  const auto found = state_->jobs.find(id);
  if (found == state_->jobs.end()) return std::nullopt;
  const Job& job = *found->second;
  return JobOutput{job.state, job.format, job.all_images, job.all_labels,
                   describe_job(*state_, job)};
}

std::optional<JobOutput> SamplingService::wait(const std::string& id,
                                               std::chrono::milliseconds wait) const {
  std::unique_lock<std::mutex> lock(state_->mu);
  const auto found = state_->jobs.find(id);
  if (found == state_->jobs.end()) return std::nullopt;
  const std::shared_ptr<Job> job = found->second;
  state_->changed.wait_for(lock, wait, [&] { return job->ended(); });
  return JobOutput{job->state, job->format, job->all_images, job->all_labels,
                   describe_job(*state_, *job)};
}

nlohmann::json SamplingService::model_json() const {
  const State& st = *state_;
  nlohmann::json flags = nlohmann::json::object();
  for (const auto& [name, value] : model_and_diffusion_settings(st.base.model, st.base.diffusion))
    flags[name.substr(1, name.size() - 2)] = value;
  nlohmann::json samplers = nlohmann::json::array();
  for (const SamplerRow& row : sampler_registry()) samplers.push_back(row.name);
  const SampleConfig& d = st.base.sample;
  return {{"object", "list"},
          {"data",
           {{{"id", st.base.sample.model_path},
             {"object", "model"},
             {"model_path", d.model_path},
             {"parameters", st.parameters},
             {"image_size", st.base.model.image_size},
             {"image_channels", st.base.model.image_channels},
             {"class_cond", st.base.model.class_cond},
             {"classifier_path", d.classifier_path},
             {"flags", flags},
             {"samplers", samplers},
             {"device", st.device.str()},
             {"defaults",
              {{"sampler", d.sampler},
               {"steps", d.steps},
               {"schedule", d.schedule},
               {"guidance_scale", d.guidance_scale},
               {"clip_denoised", d.clip_denoised}}},
             {"limits",
              {{"max_batch", st.limits.max_batch},
               {"max_queue", st.limits.max_queue},
               {"max_images_per_request", st.limits.max_images_per_request},
               {"batch_window_ms", st.limits.batch_window_ms}}}}}}};
}

nlohmann::json SamplingService::health_json() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  int64_t queued = 0, generating = 0;
  for (const auto& [id, j] : state_->jobs) {
    queued += j->state == JobState::Queued;
    generating += j->state == JobState::Generating;
  }
  return {{"status", state_->accepting ? "ok" : "shutting_down"},
          {"queued", queued},
          {"generating", generating},
          {"uptime_s", seconds(Clock::now() - state_->started)}};
}

std::string SamplingService::metrics_text() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  const State& st = *state_;
  const Metrics& m = st.metrics;
  std::ostringstream os;
  std::map<std::string, int64_t> by_state;
  for (JobState s : {JobState::Queued, JobState::Generating, JobState::Completed, JobState::Failed,
                     JobState::Cancelled})
    by_state[state_name(s)] = 0;
  for (const auto& [id, j] : st.jobs) ++by_state[state_name(j->state)];
  os << "# HELP idiff_jobs Jobs in the table by state.\n# TYPE idiff_jobs gauge\n";
  for (const auto& [name, n] : by_state) os << "idiff_jobs{state=\"" << name << "\"} " << n << "\n";
  os << "# HELP idiff_queue_depth Jobs with images left to make.\n# TYPE idiff_queue_depth gauge\n"
     << "idiff_queue_depth " << st.queue.size() << "\n";
  const std::vector<std::pair<std::string, int64_t>> counters = {
      {"idiff_jobs_submitted_total", m.submitted},
      {"idiff_jobs_completed_total", m.completed},
      {"idiff_jobs_failed_total", m.failed},
      {"idiff_jobs_cancelled_total", m.cancelled},
      {"idiff_jobs_rejected_full_total", m.rejected_full},
      {"idiff_jobs_rejected_bad_total", m.rejected_bad},
      {"idiff_results_evicted_total", m.evicted},
      {"idiff_images_total", m.images},
      {"idiff_batches_total", m.batches}};
  for (const auto& [name, n] : counters)
    os << "# TYPE " << name << " counter\n" << name << " " << n << "\n";
  const auto now = Clock::now();
  int64_t recent = 0;
  for (const auto& [t, n] : m.recent) recent += now - t < std::chrono::seconds(60) ? n : 0;
  const double window = std::min(60.0, seconds(now - st.started));
  os << "# HELP idiff_images_per_second Images made per second over the last minute.\n"
     << "# TYPE idiff_images_per_second gauge\nidiff_images_per_second "
     << (window > 0 ? double(recent) / window : 0.0) << "\n";
  histogram(os, "idiff_batch_size", "Images per model-call batch.", batch_size_bounds(),
            m.batch_sizes, double(m.batch_images));
  histogram(os, "idiff_seconds_per_image", "A job's time from submission to done per image.",
            seconds_bounds(), m.seconds_per_image, m.seconds_per_image_sum);
  const auto [rss, peak] = process_memory();
  os << "# TYPE idiff_process_resident_bytes gauge\nidiff_process_resident_bytes " << rss << "\n"
     << "# TYPE idiff_process_peak_resident_bytes gauge\nidiff_process_peak_resident_bytes " << peak
     << "\n# TYPE idiff_results_bytes gauge\nidiff_results_bytes " << st.result_bytes << "\n";
  return os.str();
}

const SampleConfig& SamplingService::defaults() const {
  return state_->base.sample;
}
const ServeLimits& SamplingService::limits() const {
  return state_->limits;
}

}  // namespace idiff::serve
