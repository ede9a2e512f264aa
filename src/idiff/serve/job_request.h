// A sampling server's requests (serve/): one job's JSON body, checked field by field, over
// the settings the server was started with (`idiff serve`'s flags, as `idiff sample`'s).
// A bad body is a RequestError naming the field and what was expected (HTTP 400).
#pragma once

#include "idiff/common/error.h"
#include "idiff/config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace idiff::serve {

class RequestError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

struct ServeLimits {
  int64_t max_batch = 16;        // images in one model call
  int64_t batch_window_ms = 20;  // how long a batch waits for company
  int64_t max_queue = 64;        // jobs waiting or running; more: 429
  int64_t max_images_per_request = 64;
  double result_ttl_s = 600;     // finished jobs are kept this long
  int64_t max_results_mb = 256;  // and in all at most this much (oldest dropped first)
};

struct JobRequest {
  SampleConfig settings;       // the server's settings with the request's fields over them
  std::string init_png;        // init_image, decoded from base64 ("" without)
  std::string format = "png";  // png | npz: what the job's result links point at
  bool seed_given = false;
};

// Parses a JSON text with nesting bounded (a deep document is a RequestError, not a
// deep recursion).
nlohmann::json parse_json_body(const std::string& body);

// One job: `num_samples`, `seed`, `sampler`, `steps`, `schedule`, `steps_file` (a steps
// file's JSON object), `eta`, `class` (an int, a list or "3,7"), `guidance_scale`,
// `classifier_scale`, `clip_denoised`, `t_start`, `init_image` (PNG or JPEG, base64 or a
// data: URL), `format`; each optional. `openai`: the images API's shape (`n` for
// num_samples, `response_format` b64_json; `prompt`, `model`, `user` accepted and unused).
JobRequest parse_job_request(const nlohmann::json& body, const SampleConfig& defaults,
                             const ServeLimits& limits, bool openai = false);

// Jobs whose keys are equal can share one model call: the sampler, its steps and
// settings, the guidance, the clipping and the start.
std::string batch_key(const SampleConfig& s);

// RFC 4648 base64 (OpenSSL's codec).
std::string base64_decode(const std::string& text, const std::string& field);
std::string base64_encode(const std::string& bytes);

}  // namespace idiff::serve
