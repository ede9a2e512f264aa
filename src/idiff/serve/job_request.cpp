#include "idiff/serve/job_request.h"

#include "idiff/common/strings.h"

#include <openssl/evp.h>

#include <cmath>
#include <limits>
#include <set>

namespace idiff::serve {
namespace {

constexpr int kMaxJsonDepth = 16;

[[noreturn]] void bad(const std::string& field, const std::string& expected,
                      const nlohmann::json& got) {
  std::string shown = got.dump();
  if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
  throw RequestError(str("field '", field, "': expected ", expected, ", got ", shown));
}

int64_t get_int(const nlohmann::json& v, const std::string& field, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(field, str("an integer in [", lo, ", ", hi, "]"), v);
  const bool unsigned_fits = v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(hi);
  if (v.is_number_unsigned() ? !unsigned_fits || int64_t(v.get<uint64_t>()) < lo
                             : v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    bad(field, str("an integer in [", lo, ", ", hi, "]"), v);
  return v.get<int64_t>();
}

double get_number(const nlohmann::json& v, const std::string& field, double lo, double hi) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo ||
      v.get<double>() > hi)
    bad(field, str("a number in [", lo, ", ", hi, "]"), v);
  return v.get<double>();
}

std::string get_string(const nlohmann::json& v, const std::string& field, size_t max_size = 64) {
  if (!v.is_string() || v.get<std::string>().size() > max_size)
    bad(field, str("a string of at most ", max_size, " characters"), v);
  return v.get<std::string>();
}

// `class`: 3, [3, 7] or "3,7" -> "3,7" (as --class).
std::string get_classes(const nlohmann::json& v) {
  if (v.is_string()) return get_string(v, "class", 4096);
  if (v.is_number_integer()) return std::to_string(get_int(v, "class", 0, 1 << 20));
  if (!v.is_array() || v.empty() || v.size() > 1024)
    bad("class", "a class label, a list of 1 to 1024 of them or \"3,7\"", v);
  std::vector<std::string> parts;
  for (const auto& c : v) parts.push_back(std::to_string(get_int(c, "class", 0, 1 << 20)));
  return join(parts, ",");
}

void apply_field(const std::string& name, const nlohmann::json& v, const ServeLimits& limits,
                 JobRequest& r) {
  SampleConfig& s = r.settings;
  if (name == "num_samples" || name == "n") {
    s.num_samples = get_int(v, name, 1, limits.max_images_per_request);
  } else if (name == "seed") {
    s.seed = static_cast<uint64_t>(get_int(v, name, 0, std::numeric_limits<int64_t>::max()));
    r.seed_given = true;
  } else if (name == "sampler") {
    s.sampler = get_string(v, name);
    s.use_ddim = false;
  } else if (name == "steps") {  // replaces the server's steps file
    s.steps = get_int(v, name, 1, 100000);
    s.steps_file = s.steps_json = "";
  } else if (name == "schedule") {
    s.schedule = get_string(v, name);
  } else if (name == "steps_file") {
    if (!v.is_object()) bad(name, "a steps file's JSON object ({\"levels\": [...]})", v);
    s.steps_json = v.dump();  // replaces the server's --steps and its schedule
    s.steps_file = s.schedule = "";
    s.steps = 0;
  } else if (name == "eta") {
    s.eta = get_number(v, name, 0, 1e6);
  } else if (name == "class") {
    s.classes = get_classes(v);
  } else if (name == "guidance_scale" || name == "classifier_scale") {
    (name == "guidance_scale" ? s.guidance_scale : s.classifier_scale) =
        get_number(v, name, 0, 1e6);
  } else if (name == "clip_denoised") {
    if (!v.is_boolean()) bad(name, "true or false", v);
    s.clip_denoised = v.get<bool>();
  } else if (name == "t_start") {
    s.t_start = get_number(v, name, 0, 1e9);
  } else if (name == "init_image") {
    std::string text = get_string(v, name, std::string::npos);
    const size_t comma = text.find(',');
    if (text.rfind("data:", 0) == 0 && comma != std::string::npos) text = text.substr(comma + 1);
    r.init_png = base64_decode(text, name);
  } else if (name == "format") {
    r.format = get_string(v, name);
    if (r.format != "png" && r.format != "npz") bad(name, "png or npz", v);
  } else {
    throw RequestError(str("unknown field '", name, "'"));
  }
}

}  // namespace

nlohmann::json parse_json_body(const std::string& body) {
  const nlohmann::json::parser_callback_t depth_check = [](int depth, nlohmann::json::parse_event_t,
                                                           nlohmann::json&) {
    if (depth > kMaxJsonDepth)
      throw RequestError(str("the body nests deeper than ", kMaxJsonDepth, " levels"));
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body, depth_check);
  } catch (const nlohmann::json::exception& e) {
    throw RequestError(str("the body is not JSON: ", e.what()));
  }
  try {
    (void)j.dump();  // the parser passes strings through unchecked; the writer checks UTF-8
  } catch (const nlohmann::json::type_error&) {
    throw RequestError("the body is not valid UTF-8");
  }
  return j;
}

JobRequest parse_job_request(const nlohmann::json& body, const SampleConfig& defaults,
                             const ServeLimits& limits, bool openai) {
  if (!body.is_object()) throw RequestError("the body must be a JSON object of job fields");
  JobRequest r;
  r.settings = defaults;
  r.settings.num_samples = 1;
  const std::set<std::string> openai_only = {"n", "response_format", "prompt", "model", "user"};
  for (const auto& [name, v] : body.items()) {
    if (name == "num_samples" && openai) throw RequestError("field 'num_samples': use 'n'");
    if (openai_only.count(name) != 0 && !openai)
      throw RequestError(str("unknown field '", name, "' (it belongs to /v1/images/generations)"));
    if (name == "response_format") {
      if (v != "b64_json") bad(name, "\"b64_json\" (images come back in the response)", v);
    } else if (name == "prompt" || name == "model" || name == "user") {
      get_string(v, name, 4096);  // accepted for clients of the images API; unused
    } else {
      apply_field(name, v, limits, r);
    }
  }
  if (!r.init_png.empty() && r.settings.t_start < 0)
    throw RequestError(
        "field 'init_image' needs 't_start' (and 'steps'): the timestep the image "
        "is noised to");
  return r;
}

std::string batch_key(const SampleConfig& s) {
  return nlohmann::json{s.sampler,       s.use_ddim, s.steps,          s.schedule,
                        s.steps_json,    s.eta,      s.guidance_scale, s.classifier_scale,
                        s.clip_denoised, s.t_start}
      .dump();
}

std::string base64_decode(const std::string& text, const std::string& field) {
  std::string clean;
  for (char c : text) {
    if (c != '\n' && c != '\r' && c != ' ') clean.push_back(c);
  }
  if (clean.empty() || clean.size() % 4 != 0) bad(field, "base64 text", text.substr(0, 40));
  std::string out(clean.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(clean.data()),
                                static_cast<int>(clean.size()));
  if (n < 0) bad(field, "base64 text", text.substr(0, 40));
  // EVP_DecodeBlock counts the padding's bytes too.
  size_t pad = 0;
  while (pad < 2 && clean[clean.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string base64_encode(const std::string& bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace idiff::serve
