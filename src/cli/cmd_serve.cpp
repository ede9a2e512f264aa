// `idiff serve`: the sampling service (serve/sampling_service.h) behind HTTP. This file is
// the thin adapter: routes, the token, status codes, Server-Sent Events and the web page.
#include "command.h"
#include "flags.h"
#include "serve_page.h"
#include "signals.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/common/strings.h"
#include "idiff/data/image_grid.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/io/npz.h"
#include "idiff/serve/sampling_service.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <atomic>
#include <iostream>
#include <thread>

namespace idiff::cli {
namespace {

using serve::SamplingService;

struct ServeOptions {
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  std::string token_file;
  double shutdown_grace_s = 30;
  int64_t max_request_mb = 16;
  int64_t max_event_streams = 64;
  serve::ServeLimits limits;
};

constexpr int kHttpThreads = 96;  // event streams hold a thread each (bounded below it)

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // A message may quote a client's bytes: invalid UTF-8 is replaced, never an exception.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", {{"message", message}, {"code", status}}}});
}

std::string read_token(const std::string& path) {
  if (path.empty()) return "";
  const std::vector<uint8_t> bytes = read_regular_file(path, 4096, "token file");
  std::string token(bytes.begin(), bytes.end());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  IDIFF_REQUIRE(token.size() >= 16, ConfigError, "`token_file` ", path,
                ": the token must hold at least 16 characters");
  return token;
}

// Every route but /health needs "Authorization: Bearer <token>" when there is a token; the
// comparison takes the same time whatever the first wrong byte.
bool authorized(const httplib::Request& req, const std::string& token) {
  if (token.empty() || req.path == "/health") return true;
  const std::string given = req.get_header_value("Authorization");
  const std::string expected = "Bearer " + token;
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

// The job of a route's first match, or a 404.
std::optional<nlohmann::json> find_job(SamplingService& svc, const httplib::Request& req,
                                       httplib::Response& res) {
  auto j = svc.job_json(req.matches[1]);
  if (!j)
    send_error(res, 404, str("no job ", std::string(req.matches[1]), " (unknown or expired)"));
  return j;
}

// A job's finished output, or an error response (404 unknown, 409 not completed).
std::optional<serve::JobOutput> completed_output(SamplingService& svc, const httplib::Request& req,
                                                 httplib::Response& res) {
  auto out = svc.output(req.matches[1]);
  if (!out) {
    send_error(res, 404, str("no job ", std::string(req.matches[1]), " (unknown or expired)"));
  } else if (out->state != serve::JobState::Completed) {
    send_error(res, 409,
               str("job ", std::string(req.matches[1]), " is ", state_name(out->state),
                   ", not completed"));
    out.reset();
  }
  return out;
}

std::string npz_of(const serve::JobOutput& out) {
  TensorMap arrays;
  arrays.insert("arr_0", out.images);
  if (out.labels.defined()) arrays.insert("arr_1", out.labels);
  return npz_bytes(arrays);
}

// Submits the body's job: 202 with its id, or 400/429/503 with the reason.
std::optional<SamplingService::Accepted> submit(SamplingService& svc, const httplib::Request& req,
                                                httplib::Response& res, bool openai) {
  try {
    const serve::JobRequest r = serve::parse_job_request(serve::parse_json_body(req.body),
                                                         svc.defaults(), svc.limits(), openai);
    return svc.submit(r);
  } catch (const serve::RequestError& e) {
    send_error(res, 400, e.what());
  } catch (const serve::QueueFull& e) {
    res.set_header("Retry-After", "5");
    send_error(res, 429, e.what());
  } catch (const serve::ShuttingDown& e) {
    send_error(res, 503, e.what());
  }
  return std::nullopt;
}

// GET /v1/jobs/{id}/events: Server-Sent Events until the job ends, a comment line every
// second keeping the connection (and noticing a client that left).
void stream_events(SamplingService& svc, const std::string& id, httplib::Response& res,
                   std::shared_ptr<std::atomic<int>> streams) {
  auto next = std::make_shared<size_t>(0);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&svc, id, next](size_t, httplib::DataSink& sink) {
        bool ended = false;
        const auto events = svc.events(id, *next, std::chrono::milliseconds(1000), ended);
        if (!events) return false;
        std::string text = events->empty() ? ": waiting\n\n" : "";
        for (const serve::JobEvent& e : *events)
          text += "event: " + e.type + "\ndata: " + e.data.dump() + "\n\n";
        *next += events->size();
        if (!sink.write(text.data(), text.size())) return false;
        if (ended) sink.done();  // the job's last event was among these
        return true;
      },
      [streams](bool) { --*streams; });
}

void add_job_routes(httplib::Server& http, SamplingService& svc, const ServeOptions& o) {
  auto streams = std::make_shared<std::atomic<int>>(0);
  const std::string id = "([0-9a-f]{16})";
  http.Post("/v1/jobs", [&svc](const httplib::Request& req, httplib::Response& res) {
    if (const auto a = submit(svc, req, res, false)) {
      send_json(res, 202,
                {{"id", a->id},
                 {"queue_position", a->queue_position},
                 {"status_url", "/v1/jobs/" + a->id},
                 {"events_url", "/v1/jobs/" + a->id + "/events"}});
    }
  });
  http.Get("/v1/jobs/" + id, [&svc](const httplib::Request& req, httplib::Response& res) {
    if (const auto j = find_job(svc, req, res)) send_json(res, 200, *j);
  });
  http.Get("/v1/jobs/" + id + "/events", [&svc, streams, max = o.max_event_streams](
                                             const httplib::Request& req, httplib::Response& res) {
    if (!find_job(svc, req, res)) return;
    if (++*streams > max) {
      --*streams;
      send_error(res, 503, str("too many event streams open (", max, "); poll the job"));
      return;
    }
    stream_events(svc, req.matches[1], res, streams);
  });
  http.Get("/v1/jobs/" + id + "/images/([0-9]{1,9})\\.png",
           [&svc](const httplib::Request& req, httplib::Response& res) {
             const auto out = completed_output(svc, req, res);
             if (!out) return;
             const int64_t k = std::stoll(req.matches[2]);
             if (k >= out->images.size(0)) {
               send_error(res, 404,
                          str("job ", std::string(req.matches[1]), " has images 0..",
                              out->images.size(0) - 1));
               return;
             }
             res.set_content(encode_png(out->images[k]), "image/png");
           });
  http.Get("/v1/jobs/" + id + "/samples\\.npz",
           [&svc](const httplib::Request& req, httplib::Response& res) {
             if (const auto out = completed_output(svc, req, res))
               res.set_content(npz_of(*out), "application/octet-stream");
           });
  http.Post(
      "/v1/jobs/" + id + "/cancel", [&svc](const httplib::Request& req, httplib::Response& res) {
        if (!find_job(svc, req, res)) return;
        if (svc.cancel(req.matches[1])) {
          send_json(res, 200, {{"id", std::string(req.matches[1])}, {"state", "cancelled"}});
        } else {
          send_error(res, 409, str("job ", std::string(req.matches[1]), " has already ended"));
        }
      });
}

void add_routes(httplib::Server& http, SamplingService& svc, const ServeOptions& o) {
  add_job_routes(http, svc, o);
  // OpenAI's images API: synchronous, the images in the response.
  http.Post("/v1/images/generations", [&svc](const httplib::Request& req, httplib::Response& res) {
    const auto a = submit(svc, req, res, true);
    if (!a) return;
    const auto out = svc.wait(a->id, std::chrono::hours(24));
    if (!out || out->state != serve::JobState::Completed) {
      send_error(res, 500,
                 out && out->description.contains("error")
                     ? out->description["error"].get<std::string>()
                     : "the job did not complete");
      return;
    }
    nlohmann::json data = nlohmann::json::array();
    for (int64_t k = 0; k < out->images.size(0); ++k)
      data.push_back({{"b64_json", serve::base64_encode(encode_png(out->images[k]))}});
    send_json(res, 200,
              {{"created", std::time(nullptr)},
               {"data", data},
               {"id", a->id},
               {"seed", out->description["seed"]}});
  });
  http.Get("/v1/models", [&svc](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, svc.model_json());
  });
  http.Get("/health", [&svc](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, svc.health_json());
  });
  http.Get("/metrics", [&svc](const httplib::Request&, httplib::Response& res) {
    res.set_content(svc.metrics_text(), "text/plain; version=0.0.4");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve_page_html(), "text/html; charset=utf-8");
  });
  http.Get("/favicon.ico",
           [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
}

void configure(httplib::Server& http, const ServeOptions& o, const std::string& token) {
  http.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  http.set_payload_max_length(static_cast<size_t>(o.max_request_mb) << 20);
  http.set_keep_alive_timeout(2);
  http.set_read_timeout(10);
  http.set_write_timeout(10);
  http.set_pre_routing_handler([token](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req, token)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "this server needs \"Authorization: Bearer <token>\" (its --token_file)");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([o](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(
          res, 413,
          str("the request body is larger than ", o.max_request_mb, " MB (--max_request_mb)"));
    } else if (res.status == 404) {
      send_error(res, 404, "no such route: " + req.method + " " + req.path.substr(0, 100));
    } else {
      send_error(res, res.status, str("HTTP ", res.status));
    }
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string message = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          message = e.what();
        } catch (...) {
        }
        send_error(res, 500, message);
      });
}

void run_server(const SampleJob& job, const ServeOptions& o) {
  const std::string token = read_token(o.token_file);
  const c10::Device device = DistContext::device_for_local_rank(job.sample.device);
  if (device.is_cpu()) tune_for_device(device);
  Logger logger;
  logger.log("device: " + describe_device(device));
  SamplingService svc(job, o.limits, device, logger);
  httplib::Server http;
  configure(http, o, token);
  add_routes(http, svc, o);
  const int port = o.port == 0 ? http.bind_to_any_port(o.host)
                               : (http.bind_to_port(o.host, int(o.port)) ? int(o.port) : -1);
  IDIFF_REQUIRE(port > 0, ConfigError, "cannot listen on ", o.host, ":", o.port,
                " (`host`/`port`: in use, or not an address of this machine)");
  install_stop_signal_handlers();
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done && stop_signal_name().empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (done) return;
    logger.log(str(stop_signal_name(), ": shutting down (queued jobs cancelled, running ones get ",
                   o.shutdown_grace_s, " s)"));
    svc.shutdown(o.shutdown_grace_s);
    http.stop();
  });
  logger.log(str("listening on http://", o.host, ":", port, "/ (max_batch ", o.limits.max_batch,
                 ", max_queue ", o.limits.max_queue, token.empty() ? "" : ", token required", ")"));
  const bool ok = http.listen_after_bind();
  done = true;
  watcher.join();
  svc.shutdown(0);
  IDIFF_REQUIRE(ok || !stop_signal_name().empty(), Error, "the server stopped listening");
  logger.log("server stopped");
}

void setup(CLI::App& sub) {
  auto job = std::make_shared<SampleJob>();
  auto o = std::make_shared<ServeOptions>();
  SampleConfig& s = job->sample;
  Flags f(sub);
  const std::string g = "Sampling (every job field's default)";
  f.add("model_path", s.model_path, "checkpoint to load (.pt or .safetensors; model or EMA)")
      ->group(g);
  f.add("clip_denoised", s.clip_denoised, "clip x_0 predictions to [-1, 1]")->group(g);
  f.add("use_ddim", s.use_ddim, "sample with DDIM instead of ancestral sampling")->group(g);
  add_sampler_flags(f, s, false);
  sub.footer(sampler_table_help());
  f.add("class", s.classes, "class labels when a job names none (default: random)")->group(g);
  const std::string gg = "Guidance";
  f.add("classifier_path", s.classifier_path, "classifier guidance with this classifier")
      ->group(gg);
  f.add("classifier_scale", s.classifier_scale, {0.0, kNoMax}, "its gradient's scale")->group(gg);
  f.add("guidance_scale", s.guidance_scale, {0.0, kNoMax}, "classifier-free guidance (1: off)")
      ->group(gg);
  add_classifier_flags(f, job->classifier);
  f.add("cuda_graph", s.cuda_graph, "CUDA: replay each sampling step as a captured graph")
      ->group(g);
  f.add("device", s.device, "auto, cpu, cuda or cuda:N")->group(g);
  const std::string gs = "Server";
  f.add("host", o->host, "address to listen on (127.0.0.1: this machine only)")->group(gs);
  f.add("port", o->port, {0, 65535}, "port (0: any free one, printed)")->group(gs);
  f.add("max_batch", o->limits.max_batch, {1, 65536}, "images per model call, across jobs")
      ->group(gs);
  f.add("batch_window_ms", o->limits.batch_window_ms, {0, 60000},
        "how long a batch waits for other jobs to join")
      ->group(gs);
  f.add("max_queue", o->limits.max_queue, {1, 1000000}, "jobs waiting or running (more: 429)")
      ->group(gs);
  f.add("max_images_per_request", o->limits.max_images_per_request, {1, 1000000},
        "num_samples (n) of one job at most")
      ->group(gs);
  f.add("result_ttl_s", o->limits.result_ttl_s, {0.0, kNoMax}, "seconds finished jobs are kept")
      ->group(gs);
  f.add("max_results_mb", o->limits.max_results_mb, {0, 1 << 20},
        "results kept in memory at most (oldest dropped first)")
      ->group(gs);
  f.add("max_request_mb", o->max_request_mb, {1, 4096}, "request bodies at most (more: 413)")
      ->group(gs);
  f.add("max_event_streams", o->max_event_streams, {1, kHttpThreads - 16},
        "event streams open at once")
      ->group(gs);
  f.add("token_file", o->token_file,
        "a file holding the bearer token every route but /health needs")
      ->group(gs);
  f.add("shutdown_grace_s", o->shutdown_grace_s, {0.0, kNoMax},
        "SIGINT/SIGTERM: seconds running jobs get to finish")
      ->group(gs);
  add_model_and_diffusion_flags(sub, job->model, job->diffusion, false);
  f.add("use_fp16", job->model.use_fp16, "run the model's torso in float16")->group(g);
  f.add("use_bf16", job->model.use_bf16, "run the model's torso in bfloat16")->group(g);
  sub.callback([job, o, &sub] {
    apply_checkpoint_flags(sub, job->sample.model_path);
    run_server(*job, *o);
  });
}

const bool registered = register_command(
    {"serve", "an HTTP sampling server: one resident model, jobs batched across users", 22, setup});

}  // namespace
}  // namespace idiff::cli
