// `idiff serve`'s core without sockets (serve/sampling_service.h): batched jobs give the
// images standalone runs give, cancelling, the queue's limits, eviction, the request fields.
#include "test_serve_util.h"

#include "idiff/common/strings.h"
#include "idiff/drivers/image_sample.h"

#include <ATen/ATen.h>

#include <fstream>
#include <iterator>
#include <thread>

namespace idiff {
namespace {

using serve::JobRequest;
using serve::JobState;
using serve::SamplingService;
using test::TempDir;

// A job of the service's defaults with these fields (a JSON object's text).
JobRequest request(const SamplingService& svc, const std::string& fields) {
  return serve::parse_job_request(serve::parse_json_body(fields), svc.defaults(), svc.limits());
}

// What `idiff sample --seed S --batch_size <max_batch>` makes with a request's settings.
SampleResult standalone(const SampleJob& base, const JobRequest& r, int64_t batch_size) {
  TempDir out;
  SampleJob job = base;
  job.sample = r.settings;
  job.sample.batch_size = batch_size;
  job.sample.log_dir = out.path();
  job.sample.grid_size = 0;
  return run_sampling(job);
}

void expect_same_images(SamplingService& svc, const std::string& id, const SampleResult& ref) {
  ASSERT_EQ(svc.wait(id, std::chrono::seconds(120))->state, JobState::Completed)
      << svc.job_json(id)->dump();
  const serve::JobOutput out = *svc.output(id);
  ASSERT_EQ(out.images.sizes(), ref.images.sizes());
  // float32 on the CPU: the same pixels up to one level (rounding near a level's edge).
  EXPECT_LE((out.images.to(at::kInt) - ref.images.to(at::kInt)).abs().max().item<int>(), 1) << id;
  if (ref.labels.defined()) {
    EXPECT_TRUE(at::equal(out.labels, ref.labels)) << id;
  }
}

TEST(ServeCore, BatchedJobsGiveTheImagesOfStandaloneRuns) {
  TempDir dir;
  const SampleJob base = test::serve_test_job(dir, /*guided=*/true);
  serve::ServeLimits limits;
  limits.max_batch = 4;
  limits.batch_window_ms = 500;
  SamplingService svc(base, limits, c10::kCPU, test::quiet_logger());
  const std::vector<std::string> bodies = {
      R"({"num_samples": 2, "seed": 11, "class": [1, 2]})",
      R"({"num_samples": 1, "seed": 12})",  // random labels, merged with the first
      R"({"num_samples": 5, "seed": 13})",  // split over two batches: 4 + 1
      R"({"num_samples": 2, "seed": 14, "sampler": "euler_a", "guidance_scale": 2, "class": 3})"};
  std::vector<std::string> ids;
  for (const std::string& b : bodies) ids.push_back(svc.submit(request(svc, b)).id);
  for (size_t i = 0; i < ids.size(); ++i)
    expect_same_images(svc, ids[i], standalone(base, request(svc, bodies[i]), 4));
  // Outputs depend on the seed (a washed-out model would make every pair "equal").
  EXPECT_FALSE(at::equal(svc.output(ids[0])->images[0], svc.output(ids[1])->images[0]));
  // The first two shared one model call: 4 batches for 5 parts.
  const std::string metrics = svc.metrics_text();
  EXPECT_NE(metrics.find("idiff_batches_total 4\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("idiff_images_total 10\n"), std::string::npos) << metrics;
}

TEST(ServeCore, AnInitImageJobIsTheSdeditRunOfThatImage) {
  TempDir dir;
  const SampleJob base = test::serve_test_job(dir, false);
  SamplingService svc(base, {}, c10::kCPU, test::quiet_logger());
  const Image8 image = test::pattern_image(32, 32, 3);
  test::write_png(dir.file("init.png"), image);
  std::ifstream in(dir.file("init.png"), std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string fields = R"("seed": 4, "sampler": "ddim", "steps": 2, "t_start": 300)";
  const std::string with_image =
      R"({"init_image": ")" + serve::base64_encode(png) + "\", " + fields + "}";
  // Merged with a plain job of the same setting: each keeps its own start.
  const std::string plain = svc.submit(request(svc, "{" + fields + "}")).id;
  const std::string edited = svc.submit(request(svc, with_image)).id;
  JobRequest r = request(svc, "{" + fields + "}");
  expect_same_images(svc, plain, standalone(base, r, 16));
  r.settings.init_image = dir.file("init.png");
  expect_same_images(svc, edited, standalone(base, r, 16));
  EXPECT_FALSE(at::equal(svc.output(plain)->images, svc.output(edited)->images));
}

TEST(ServeCore, ACancelledJobLeavesItsBatchAndTheOthersGoOn) {
  TempDir dir;
  const SampleJob base = test::serve_test_job(dir, false);
  serve::ServeLimits limits;
  limits.batch_window_ms = 300;
  SamplingService svc(base, limits, c10::kCPU, test::quiet_logger());
  const std::string body = R"({"num_samples": 1, "seed": 21, "steps": 40})";
  const std::string a = svc.submit(request(svc, body)).id;
  const std::string b =
      svc.submit(request(svc, R"({"num_samples": 1, "seed": 22, "steps": 40})")).id;
  bool ended = false;
  ASSERT_TRUE(svc.events(a, 2, std::chrono::seconds(60), ended));  // queued, started, step 1...
  EXPECT_TRUE(svc.cancel(a));
  EXPECT_FALSE(svc.cancel(a));  // already ended
  EXPECT_EQ(svc.job_json(a)->at("state"), "cancelled");
  expect_same_images(
      svc, b, standalone(base, request(svc, R"({"num_samples": 1, "seed": 22, "steps": 40})"), 16));
  EXPECT_EQ(svc.output(a)->images.defined(), false);
  // A batch whose jobs are all cancelled stops at its next step.
  const std::string c = svc.submit(request(svc, R"({"num_samples": 1, "steps": 900})")).id;
  ASSERT_TRUE(svc.events(c, 3, std::chrono::seconds(60), ended));
  EXPECT_TRUE(svc.cancel(c));
  const std::string d = svc.submit(request(svc, body)).id;
  EXPECT_EQ(svc.wait(d, std::chrono::seconds(60))->state, JobState::Completed);
  EXPECT_LT(svc.job_json(c)->at("progress").at("steps_done").get<int64_t>(), 800);
}

TEST(ServeCore, TheQueueHasALimitAndResultsExpire) {
  TempDir dir;
  const SampleJob base = test::serve_test_job(dir, false);
  serve::ServeLimits limits;
  limits.max_queue = 1;
  limits.result_ttl_s = 0.2;
  SamplingService svc(base, limits, c10::kCPU, test::quiet_logger());
  const std::string a = svc.submit(request(svc, R"({"steps": 3})")).id;
  EXPECT_NE(test::error_of([&] {
              svc.submit(request(svc, R"({"steps": 3})"));
            }).find("the queue is full (1 jobs, --max_queue 1)"),
            std::string::npos);
  ASSERT_EQ(svc.wait(a, std::chrono::seconds(60))->state, JobState::Completed);
  // Evicted once older than --result_ttl_s (the worker looks every second).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(svc.job_json(a).has_value());
  EXPECT_NE(svc.metrics_text().find("idiff_results_evicted_total 1\n"), std::string::npos);
}

TEST(ServeCore, ResultsAboveTheMemoryLimitAreDroppedOldestFirst) {
  TempDir dir;
  const SampleJob base = test::serve_test_job(dir, false);
  serve::ServeLimits limits;
  limits.max_results_mb = 0;  // keep nothing once finished: the size rule alone evicts
  SamplingService svc(base, limits, c10::kCPU, test::quiet_logger());
  const std::string a = svc.submit(request(svc, R"({"steps": 2})")).id;
  ASSERT_EQ(svc.wait(a, std::chrono::seconds(60))->state, JobState::Completed);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(svc.job_json(a).has_value());
}

TEST(ServeCore, BadFieldsAreRequestErrorsNamingTheField) {
  TempDir dir;
  SamplingService svc(test::serve_test_job(dir, false), {}, c10::kCPU, test::quiet_logger());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"num_samples": 0})", "field 'num_samples': expected an integer in [1, 64]"},
      {R"({"num_samples": 1e9})", "field 'num_samples': expected an integer"},
      {R"({"seed": -1})", "field 'seed': expected an integer in [0, "},
      {R"({"steps": "ten"})", "field 'steps': expected an integer"},
      {R"({"sampler": "bogus"})", "'sampler': unknown sampler 'bogus'"},
      {R"({"schedule": "bogus", "steps": 3})", "bogus"},
      {R"({"eta": -1})", "field 'eta': expected a number in [0, "},
      {R"({"class": 3})", "'class' 3 needs a class-conditional model"},
      {R"({"guidance_scale": 2})", "'guidance_scale' (classifier-free guidance) needs"},
      {R"({"clip_denoised": "yes"})", "field 'clip_denoised': expected true or false"},
      {R"({"init_image": "QUJD"})", "field 'init_image' needs 't_start'"},
      {R"({"init_image": "QUJD", "t_start": 5, "steps": 2})", "cannot decode the image of field"},
      {R"({"init_image": "%%%", "t_start": 5, "steps": 2})", "field 'init_image': expected base64"},
      {R"({"steps_file": {"levels": [999, 500]}})", "the last level must be"},
      {R"({"steps_file": [1]})", "field 'steps_file': expected a steps file's JSON object"},
      {R"({"format": "gif"})", "field 'format': expected png or npz"},
      {R"({"n": 2})", "unknown field 'n' (it belongs to /v1/images/generations)"},
      {R"({"bogus": 1})", "unknown field 'bogus'"},
      {R"([1, 2])", "the body must be a JSON object"},
      {"{\"seed\": 1", "the body is not JSON"},
      {std::string(40, '[') + std::string(40, ']'), "the body nests deeper than 16 levels"},
  };
  for (const auto& [body, message] : cases) {
    const std::string e = test::error_of([&] { svc.submit(request(svc, body)); });
    EXPECT_NE(e.find(message), std::string::npos) << body << " -> " << e;
  }
  // OpenAI's shape: n and response_format.
  const JobRequest r = serve::parse_job_request(
      serve::parse_json_body(R"({"n": 3, "response_format": "b64_json", "prompt": "x"})"),
      svc.defaults(), svc.limits(), true);
  EXPECT_EQ(r.settings.num_samples, 3);
  EXPECT_NE(test::error_of([&] {
              serve::parse_job_request(serve::parse_json_body(R"({"response_format": "url"})"),
                                       svc.defaults(), svc.limits(), true);
            }).find("field 'response_format': expected \"b64_json\""),
            std::string::npos);
}

}  // namespace
}  // namespace idiff
