// A local server that speaks the subset of W&B's HTTP protocol TransferBench uses (GraphQL
// UpsertBucket, file_stream), records what it receives, and injects faults on request:
// 500s, 429 with Retry-After, responses slower than the client's timeout (after applying the
// request), and connections closed mid-response (before or after applying it). It applies
// file_stream chunks as W&B does: lines at `offset` replace what is there. A `complete` marks
// the run finished or failed; an UpsertBucket of that run resumes it (running again), after
// which file_stream accepts more lines. Data streamed to a completed, unresumed run is counted.
#pragma once

#include <httplib.h>

#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace tb::testing {

class FakeWandb {
 public:
  enum Fault { kNone, kServerError, kRateLimit, kSlow, kDropBeforeApply, kDropAfterApply };

  struct Stats {
    int64_t requests = 0;
    std::map<Fault, int64_t> faults;
    int64_t line_rewrites_same = 0;       // a resent line with the same content (absorbed)
    int64_t line_rewrites_different = 0;  // a resent line with other content: a real duplicate
    int64_t unauthorized = 0;
    int64_t data_while_complete = 0;      // file data for a run marked complete and not resumed
  };

  struct RunFiles {
    std::map<std::string, std::vector<std::string>> files;  // file name -> lines
    std::vector<int> completes;                              // exit codes, in order received
    std::string state = "running";                           // finished | failed after complete
    int64_t resumes = 0;                                     // UpsertBuckets after a complete
  };

  explicit FakeWandb(std::string api_key, double fault_rate = 0.0, double slow_seconds = 0.0, uint32_t seed = 1)
      : api_key_(std::move(api_key)), fault_rate_(fault_rate), slow_seconds_(slow_seconds), rng_(seed) {
    server_.Post("/graphql", [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res, true); });
    server_.Post(R"(/files/([^/]+)/([^/]+)/([^/]+)/file_stream)",
                 [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res, false); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeWandb() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void SetFaultRate(double rate) {
    std::lock_guard<std::mutex> lock(mutex_);
    fault_rate_ = rate;
  }

  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  std::vector<nlohmann::json> upserts() {
    std::lock_guard<std::mutex> lock(mutex_);
    return upserts_;
  }
  std::map<std::string, RunFiles> runs() {
    std::lock_guard<std::mutex> lock(mutex_);
    return runs_;
  }
  // Every request as received, minus its Authorization header: "path\nheaders\nbody".
  std::vector<std::string> transcripts() {
    std::lock_guard<std::mutex> lock(mutex_);
    return transcripts_;
  }

 private:
  static std::string Base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    int val = 0, bits = -6;
    for (unsigned char c : in) {
      val = (val << 8) + c;
      bits += 8;
      while (bits >= 0) {
        out.push_back(t[(val >> bits) & 0x3F]);
        bits -= 6;
      }
    }
    if (bits > -6) out.push_back(t[((val << 8) >> (bits + 8)) & 0x3F]);
    while (out.size() % 4) out.push_back('=');
    return out;
  }

  Fault Draw() {
    std::uniform_real_distribution<double> u(0, 1);
    if (u(rng_) >= fault_rate_) return kNone;
    std::vector<Fault> kinds = {kServerError, kRateLimit, kDropBeforeApply, kDropAfterApply};
    if (slow_seconds_ > 0) kinds.push_back(kSlow);
    return kinds[std::uniform_int_distribution<size_t>(0, kinds.size() - 1)(rng_)];
  }

  void Apply(const httplib::Request& req, bool graphql, nlohmann::json& reply) {
    const auto body = nlohmann::json::parse(req.body);
    if (graphql) {
      const auto& v = body.at("variables");
      upserts_.push_back(v);
      const std::string name = v.at("name").get<std::string>();
      const std::string entity = v.at("entity").is_null() ? "default-entity" : v.at("entity").get<std::string>();
      if (auto it = runs_.find(entity + "/" + v.at("project").get<std::string>() + "/" + name);
          it != runs_.end() && it->second.state != "running") {
        it->second.state = "running";
        ++it->second.resumes;
      }
      reply = {{"data",
                {{"upsertBucket",
                  {{"bucket",
                    {{"id", "bucket-" + name},
                     {"name", name},
                     {"displayName", v.value("displayName", "")},
                     {"project", {{"id", "p1"}, {"name", v.at("project")}, {"entity", {{"id", "e1"}, {"name", entity}}}}},
                     {"historyLineCount", 0}}},
                   {"inserted", true}}}}}};
      return;
    }
    const std::string run = req.matches[1].str() + "/" + req.matches[2].str() + "/" + req.matches[3].str();
    RunFiles& rf = runs_[run];
    if (body.contains("files")) {
      if (rf.state != "running") ++stats_.data_while_complete;
      for (const auto& [name, chunk] : body["files"].items()) {
        auto& lines = rf.files[name];
        size_t offset = chunk.at("offset").get<size_t>();
        for (const auto& line : chunk.at("content")) {
          const std::string text = line.get<std::string>();
          if (offset < lines.size()) {
            // The summary is one line that each update replaces; the others only grow.
            if (name != "wandb-summary.json") {
              (lines[offset] == text ? stats_.line_rewrites_same : stats_.line_rewrites_different)++;
            }
            lines[offset] = text;
          } else {
            lines.resize(offset + 1);
            lines[offset] = text;
          }
          ++offset;
        }
      }
    }
    if (body.value("complete", false)) {
      rf.completes.push_back(body.at("exitcode").get<int>());
      rf.state = rf.completes.back() == 0 ? "finished" : "failed";
    }
    reply = {{"exitcode", nullptr}, {"limits", nlohmann::json::object()}};
  }

  void Handle(const httplib::Request& req, httplib::Response& res, bool graphql) {
    Fault fault;
    nlohmann::json reply;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.requests;
      std::string headers;
      for (const auto& [k, v] : req.headers) {
        if (k != "Authorization") headers += k + ": " + v + "\n";
      }
      transcripts_.push_back(req.path + "\n" + headers + "\n" + req.body);
      if (req.get_header_value("Authorization") != "Basic " + Base64("api:" + api_key_)) {
        ++stats_.unauthorized;
        res.status = 401;
        res.set_content(R"({"errors":[{"message":"unauthorized"}]})", "application/json");
        return;
      }
      fault = Draw();
      ++stats_.faults[fault];
      if (fault == kServerError) {
        res.status = 500;
        res.set_content(R"({"error":"injected"})", "application/json");
        return;
      }
      if (fault == kRateLimit) {
        res.status = 429;
        res.set_header("Retry-After", "1");
        res.set_content(R"({"error":"slow down"})", "application/json");
        return;
      }
      if (fault != kDropBeforeApply) Apply(req, graphql, reply);
    }
    if (fault == kSlow) std::this_thread::sleep_for(std::chrono::duration<double>(slow_seconds_));
    if (fault == kDropBeforeApply || fault == kDropAfterApply) {
      // Headers go out, then the connection closes before the body: the client cannot know
      // whether the request was applied.
      res.set_content_provider(100, "application/json",
                               [](size_t, size_t, httplib::DataSink&) { return false; });
      return;
    }
    res.set_content(reply.dump(), "application/json");
  }

  std::string api_key_;
  double fault_rate_;
  double slow_seconds_;
  std::mt19937 rng_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  Stats stats_;
  std::vector<nlohmann::json> upserts_;
  std::map<std::string, RunFiles> runs_;
  std::vector<std::string> transcripts_;
};

}  // namespace tb::testing
