// The Weights & Biases sink: TransferBench's own client for W&B's public HTTP protocol (the
// GraphQL UpsertBucket mutation and the file_stream endpoint), the sync that sends a run's
// unacknowledged rows from the store, and the live logger that runs it in the background.
// W&B is a mirror: every value is committed to SQLite first, then sent. docs/wandb.md lists
// the subset of the protocol spoken here.
//
//   tb::WandbSettings settings = tb::WandbSettings::Resolve({{"wandb.project", "mine"}});
//   if (settings.Online()) logger.Add(std::make_unique<tb::WandbLogger>(store_path, run_id, settings));
//   ...
//   tb::WandbSync sync(store, settings, "sync-cli");
//   tb::SyncReport r = sync.SyncRun(run_id, tb::NowSeconds() + 60);
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/http.h"
#include "store/logger.h"
#include "store/outbox.h"
#include "store/run_store.h"

namespace tb {

struct WandbSettings {
  std::string mode = "online";  // online | offline | disabled (dryrun = offline)
  std::string base_url = "https://api.wandb.ai";
  std::string api_key;          // never stored, logged or printed
  std::string key_source;       // "WANDB_API_KEY", "~/.netrc" or "" (for messages)
  std::string entity;           // empty: the key's default entity
  std::string project = "transferbench";
  std::string group;            // empty: the run's suite
  std::vector<std::string> tags;
  double timeout = 10;          // seconds per HTTP request
  double finish_timeout = 5;    // how long the end of a run waits for W&B
  double interval = 2;          // seconds between background sends
  double backoff_initial = 1;   // first retry delay; doubles, with up to 25% jitter
  double backoff_max = 30;
  int64_t max_lines = 1000;     // history lines per request

  // Environment (WANDB_MODE, WANDB_BASE_URL, WANDB_API_KEY or ~/.netrc, WANDB_ENTITY,
  // WANDB_PROJECT, WANDB_RUN_GROUP, WANDB_TAGS), then `wandb.*` overrides (mode, base_url,
  // entity, project, group, tags, timeout, finish_timeout, interval, backoff_initial,
  // backoff_max, max_lines). BadInput names a bad key or value.
  static WandbSettings Resolve(const std::map<std::string, std::string>& overrides = {});
  static std::vector<std::string> OptionNames();
  bool Online() const { return mode == "online" && !api_key.empty(); }
  // The outbox sink of this destination ("wandb <base_url> <entity or -> /<project>"): what was
  // acknowledged by one server or project says nothing about another, so each keeps its own
  // cursors and a run is mirrored in full to every destination it is synced to.
  std::string Sink() const;
};

// The key from ~/.netrc (or $NETRC) for the base URL's host ("host" or "host:port").
std::string NetrcPassword(const std::string& base_url);

// A status that retrying cannot fix (401, 403, 404, ...): the sender stops with one message.
class WandbFatalError : public std::runtime_error {
 public:
  explicit WandbFatalError(const std::string& what) : std::runtime_error(what) {}
};

// One W&B endpoint call with the retry policy: 429 waits Retry-After (or backs off); 408, other
// 4xx, 5xx and transport failures back off exponentially with jitter; 400, 401, 403, 404, 409,
// 410, 413, 422 and 501 throw WandbFatalError. Gives up (returns false) at the deadline.
class WandbClient {
 public:
  explicit WandbClient(WandbSettings settings) : settings_(std::move(settings)) {}
  // A deadline every call obeys, which another thread may move earlier (the end of a run).
  void SetDeadlineCap(const std::atomic<double>* cap) { cap_ = cap; }
  // POST {base}{path}; on success `response` holds the parsed body.
  bool Post(const std::string& path, const nlohmann::json& body, double deadline, nlohmann::json& response);

  struct Counters {
    int64_t requests = 0, retries = 0, failures = 0;
  };
  const Counters& counters() const { return counters_; }
  const WandbSettings& settings() const { return settings_; }

 private:
  WandbSettings settings_;
  HttpSession http_;
  Counters counters_;
  const std::atomic<double>* cap_ = nullptr;
  double not_before_ = 0;  // a 429's Retry-After or the backoff outlives one call
};

struct SyncReport {
  bool done = false;            // the final state is acknowledged: nothing left to send
  bool leased = true;           // false: another sender held the run
  int64_t history_lines = 0;    // lines acknowledged in this call
  int64_t console_lines = 0;
  bool summary_sent = false;
  bool final_sent = false;
  bool sent_anything() const { return history_lines > 0 || console_lines > 0 || summary_sent || final_sent; }
  std::string remote;           // entity/project/run
};

// Sends one run's unacknowledged data: the run (UpsertBucket), history lines, console lines,
// the summary, and, once the run has ended (finished, failed, or crashed), the final state.
// A crash derived from a stale heartbeat is withdrawn if the heartbeat moves on: the W&B run is
// resumed (UpsertBucket again) and sent the rest, then its true final state.
// History lines are built deterministically from the stored metric rows (consecutive rows of
// one step form one line; `_step` is the line's index), so a resent chunk carries the same
// lines at the same offsets and W&B replaces rather than duplicates them.
class WandbSync {
 public:
  WandbSync(RunStore& store, WandbSettings settings, std::string owner);
  SyncReport SyncRun(const std::string& run_id, double deadline);
  // An empty file_stream request, which tells W&B a silent run is still alive.
  void KeepAlive(const std::string& remote, double deadline);
  WandbClient& client() { return client_; }

 private:
  RunStore& store_;
  Outbox outbox_;
  WandbClient client_;
  std::string owner_;
};

// The live sender: a background thread syncs the run every `interval` seconds; at the end of
// the run it waits at most `finish_timeout` for the rest, then leaves it to
// `transferbench sync`. It never fails or blocks the experiment; a fatal status stops it with
// one message on stderr. Add it to the fan-out after the SqliteLogger.
class WandbLogger : public RunLogger {
 public:
  WandbLogger(const std::string& store_path, std::string run_id, WandbSettings settings);
  ~WandbLogger() override;
  void Scalar(std::string_view, double, int64_t) override {}
  void Summary(const std::map<std::string, double>&) override {}
  void RunEnded(RunStatus status, int exit_code, const std::string& error) override;

 private:
  void Loop();
  std::string store_path_;
  std::string run_id_;
  WandbSettings settings_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool ended_ = false;
  bool stop_ = false;
  std::atomic<double> cap_{1e300};
  double final_deadline_ = 0;
  std::thread thread_;
};

}  // namespace tb
