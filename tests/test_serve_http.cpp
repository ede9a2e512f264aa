// `idiff serve` as a process: the routes, the token, the status codes with their messages,
// Server-Sent Events, SIGTERM with jobs in flight, and a bounded fuzz of malformed requests.
#include "test_serve_util.h"

#include "idiff/data/image_datasets.h"
#include "idiff/io/npz.h"
#include "idiff/serve/job_request.h"

#include <ATen/ATen.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <thread>

namespace idiff {
namespace {

using test::ServerProcess;
using test::TempDir;

const std::string kToken = "0123456789abcdef-test-token";

httplib::Headers auth() {
  return {{"Authorization", "Bearer " + kToken}};
}

nlohmann::json json_of(const httplib::Result& r) {
  return nlohmann::json::parse(r->body);
}

std::string message_of(const httplib::Result& r) {
  return json_of(r).at("error").at("message").get<std::string>();
}

std::string submit(httplib::Client& c, const std::string& body, int expect = 202) {
  const auto r = c.Post("/v1/jobs", auth(), body, "application/json");
  EXPECT_TRUE(r);
  if (!r) return "";
  EXPECT_EQ(r->status, expect) << r->body;
  return r->status == 202 ? json_of(r).at("id").get<std::string>() : r->body;
}

// The job's whole event stream, to its end.
std::string events_of(httplib::Client& c, const std::string& id) {
  const auto r = c.Get("/v1/jobs/" + id + "/events", auth());
  EXPECT_TRUE(r && r->status == 200);
  return r ? r->body : "";
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

at::Tensor npz_images(const std::string& bytes) {
  TempDir dir;
  std::ofstream(dir.file("s.npz"), std::ios::binary) << bytes;
  return read_npz(dir.file("s.npz")).at("arr_0");
}

// Sends raw bytes on a fresh connection and returns whatever comes back (5 s at most).
std::string raw_exchange(int port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    (void)!send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) got.append(buf, size_t(n));
  }
  close(fd);
  return got;
}

TEST(ServeHttp, JobsOverHttpWithTokenLimitsAndEvents) {
  TempDir dir;
  std::ofstream(dir.file("token")) << kToken << "\n";
  ServerProcess server(
      test::cat_args(test::serve_test_flags(dir, false),
                     std::vector<std::string>{"--token_file", dir.file("token"), "--max_queue", "2",
                                              "--max_request_mb", "1", "--batch_window_ms", "20"}));
  ASSERT_NE(server.port(), 0);
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(120);
  // The token: /health alone is open.
  EXPECT_EQ(c.Get("/health")->status, 200);
  auto r = c.Get("/v1/models");
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(message_of(r).find("Authorization: Bearer"), std::string::npos);
  EXPECT_EQ(
      c.Get("/v1/models", {{"Authorization", "Bearer wrong-token-of-the-same-size!"}})->status,
      401);
  r = c.Get("/v1/models", auth());
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(json_of(r)["data"][0]["image_size"], 32);
  // A job, its events (one per solver step), its images and npz.
  const std::string id = submit(c, R"({"num_samples": 2, "seed": 5})");
  const std::string events = events_of(c, id);
  EXPECT_EQ(count(events, "event: step\n"), 3u) << events;
  EXPECT_NE(events.find("event: queued\n"), std::string::npos);
  EXPECT_NE(events.rfind("event: done\n"), std::string::npos) << events;
  r = c.Get("/v1/jobs/" + id, auth());
  EXPECT_EQ(json_of(r)["state"], "completed");
  EXPECT_EQ(json_of(r)["progress"]["steps_done"], 3);
  const at::Tensor images = npz_images(c.Get("/v1/jobs/" + id + "/samples.npz", auth())->body);
  EXPECT_EQ(images.sizes(), (at::IntArrayRef{2, 32, 32, 3}));
  r = c.Get("/v1/jobs/" + id + "/images/1.png", auth());
  ASSERT_EQ(r->status, 200);
  const Image8 png = decode_image_bytes({r->body.begin(), r->body.end()}, "png");
  EXPECT_TRUE(at::equal(
      at::from_blob(const_cast<uint8_t*>(png.pixels.data()), {32, 32, 3}, at::kByte), images[1]));
  EXPECT_EQ(c.Get("/v1/jobs/" + id + "/images/2.png", auth())->status, 404);
  // OpenAI's images API: the same seed, the same first image.
  r = c.Post("/v1/images/generations", auth(), R"({"n": 1, "seed": 5, "prompt": "unused"})",
             "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  const std::string b64 = json_of(r)["data"][0]["b64_json"];
  const std::string first = serve::base64_decode(b64, "b64_json");
  EXPECT_EQ(first, c.Get("/v1/jobs/" + id + "/images/0.png", auth())->body);
  // 400, 404, 413, 429 and 409, each with its message.
  EXPECT_NE(submit(c, R"({"steps": 0})", 400).find("field 'steps'"), std::string::npos);
  r = c.Get("/v1/jobs/0123456789abcdef", auth());
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(message_of(r).find("no job 0123456789abcdef"), std::string::npos);
  EXPECT_EQ(c.Get("/v1/jobs/../../etc/passwd", auth())->status, 404);
  r = c.Post("/v1/jobs", auth(), "{\"seed\": 1, \"x\": \"" + std::string(1100000, 'a') + "\"}",
             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(message_of(r).find("--max_request_mb"), std::string::npos);
  const std::string slow = R"({"steps": 900, "sampler": "ddim"})";
  const std::string a = submit(c, slow), b = submit(c, slow);
  r = c.Post("/v1/jobs", auth(), slow, "application/json");
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->get_header_value("Retry-After"), "5");
  EXPECT_NE(message_of(r).find("the queue is full"), std::string::npos);
  EXPECT_EQ(c.Post("/v1/jobs/" + a + "/cancel", auth(), "", "application/json")->status, 200);
  EXPECT_EQ(c.Post("/v1/jobs/" + b + "/cancel", auth(), "", "application/json")->status, 200);
  r = c.Post("/v1/jobs/" + b + "/cancel", auth(), "", "application/json");
  EXPECT_EQ(r->status, 409);
  EXPECT_NE(message_of(r).find("has already ended"), std::string::npos);
  EXPECT_EQ(c.Get("/v1/jobs/" + b + "/samples.npz", auth())->status, 409);
  r = c.Get("/metrics", auth());
  EXPECT_NE(r->body.find("idiff_jobs_rejected_full_total 1\n"), std::string::npos) << r->body;
  EXPECT_NE(c.Get("/", auth())->body.find("id=\"generate\""), std::string::npos);
  EXPECT_EQ(server.stop(SIGTERM, 30), 0) << server.log();
}

TEST(ServeHttp, BadFlagsFailBeforeThePortOpens) {
  TempDir dir;
  const std::vector<std::string> model = test::serve_test_flags(dir, false);
  std::ofstream(dir.file("short")) << "abc\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--token_file", dir.file("short")}, "the token must hold at least 16 characters"},
      {{"--token_file", dir.file("missing")}, dir.file("missing")},
      {{"--sampler", "bogus"}, "--sampler: unknown sampler 'bogus'"},
      {{"--max_batch", "0"}, "--max_batch"},
      {{"--guidance_scale", "2"}, "--guidance_scale (classifier-free guidance) needs"}};
  for (const auto& [flags, message] : cases) {
    const auto r = test::run_idiff(
        test::cat_args(std::vector<std::string>{"serve", "--port", "0"}, model, flags));
    EXPECT_NE(r.exit_code, 0) << flags[0];
    EXPECT_NE(r.exit_code, 134) << flags[0];
    EXPECT_NE(r.err.find(message), std::string::npos) << flags[0] << ": " << r.err;
    EXPECT_EQ(r.out.find("listening on"), std::string::npos) << r.out;
  }
  const auto r = test::run_idiff({"serve", "--port", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--model_path is required"), std::string::npos) << r.err;
}

TEST(ServeHttp, SigtermWithJobsInFlightExitsZero) {
  TempDir dir;
  ServerProcess server(test::cat_args(test::serve_test_flags(dir, false),
                                      std::vector<std::string>{"--shutdown_grace_s", "0.5"}));
  ASSERT_NE(server.port(), 0);
  httplib::Client c("127.0.0.1", server.port());
  const std::string running = submit(c, R"({"steps": 900, "sampler": "ddim"})");
  const std::string queued = submit(c, R"({"steps": 900, "sampler": "euler"})");
  for (int i = 0; i < 200 && json_of(c.Get("/v1/jobs/" + running))["state"] != "generating"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(server.stop(SIGTERM, 30), 0) << server.log();
  EXPECT_NE(server.log().find("SIGTERM: shutting down"), std::string::npos) << server.log();
  EXPECT_NE(server.log().find("server stopped"), std::string::npos) << server.log();
}

TEST(ServeHttp, MalformedRequestsLeaveTheServerHealthy) {
  TempDir dir;
  ServerProcess server(test::serve_test_flags(dir, false));
  ASSERT_NE(server.port(), 0);
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60);
  const std::string good = submit(c, R"({"seed": 9})");
  const std::string before = events_of(c, good);
  const std::string image = c.Get("/v1/jobs/" + good + "/images/0.png")->body;
  std::mt19937 rng(1234);
  std::vector<std::string> raw = {
      "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
      "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
      "GET /v1/jobs/" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /v1/jobs/%2e%2e%2f%2e%2e HTTP/1.1\r\nHost: x\r\n\r\n",
      "BREW /coffee HTCPCP/1.0\r\n\r\n",
      "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\nab"};
  for (int i = 0; i < 30; ++i) {
    std::string junk(1 + rng() % 3000, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    raw.push_back(i % 2 ? junk : "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n" + junk);
  }
  for (const std::string& bytes : raw) raw_exchange(server.port(), bytes);
  const std::vector<std::string> bodies = {
      "{\"class\": \"\xff\xfe\"}",
      "{\"seed\": 1e400}",
      "{\"seed\": -9223372036854775809}",
      "{\"num_samples\": 18446744073709551616}",
      "{\"steps\": 9.5}",
      std::string(100000, '['),
      "{\"steps_file\": {\"levels\": [1e308, -1e308]}}",
      "{\"eta\": NaN}",
      "\"just a string\"",
      "{\"init_image\": \"" + std::string(1000, '=') + "\", \"t_start\": 1, \"steps\": 1}"};
  for (const std::string& body : bodies) {
    const auto r = c.Post("/v1/jobs", body, "application/json");
    ASSERT_TRUE(r) << body.substr(0, 50);
    EXPECT_EQ(r->status, 400) << body.substr(0, 50) << " -> " << r->body;
  }
  // Still serving, and the next good job is right.
  EXPECT_EQ(c.Get("/health")->status, 200);
  const std::string again = submit(c, R"({"seed": 9})");
  events_of(c, again);
  EXPECT_EQ(c.Get("/v1/jobs/" + again + "/images/0.png")->body, image);
  EXPECT_EQ(server.stop(SIGINT, 30), 0) << server.log();
}

}  // namespace
}  // namespace idiff
