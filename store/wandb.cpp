#include "store/wandb.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace {

constexpr const char* kUpsertBucket = R"gql(mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) {
  upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics}) {
    bucket { id name displayName description config sweepName project { id name entity { id name } } historyLineCount }
    inserted
  }
})gql";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::vector<std::string> SplitTags(const std::string& text) {
  std::vector<std::string> tags;
  std::stringstream ss(text);
  std::string t;
  while (std::getline(ss, t, ',')) {
    while (!t.empty() && t.front() == ' ') t.erase(t.begin());
    while (!t.empty() && t.back() == ' ') t.pop_back();
    if (!t.empty()) tags.push_back(t);
  }
  return tags;
}

double ParsePositive(const std::string& key, const std::string& value) {
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  if (value.empty() || end != value.c_str() + value.size() || !(v > 0) || !std::isfinite(v)) {
    throw BadInput(fmt::format("{}={}: expected a positive, finite number", key, value));
  }
  return v;
}

int64_t ParseCount(const std::string& key, const std::string& value, int64_t most) {
  const double v = ParsePositive(key, value);
  if (v > static_cast<double>(most)) throw BadInput(fmt::format("{}={}: expected at most {}", key, value, most));
  return std::max<int64_t>(1, static_cast<int64_t>(v));
}

std::string HostOf(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  const auto end = url.find('/', start);
  return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

bool IsFatal(long status) {
  switch (status) {
    case 400: case 401: case 403: case 404: case 409: case 410: case 413: case 422: case 501:
      return true;
    default:
      return false;
  }
}

std::string FatalHint(long status) {
  switch (status) {
    case 401: return "the API key was refused: check WANDB_API_KEY or ~/.netrc";
    case 403: return "the key may not write to this entity or project: check WANDB_ENTITY and WANDB_PROJECT";
    case 404: return "no such entity, project or endpoint: check WANDB_BASE_URL, WANDB_ENTITY and WANDB_PROJECT";
    default: return "the server refused the request";
  }
}

void SleepFor(double seconds) {
  if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

// W&B's config shape: {"key": {"value": ..., "desc": null}}.
nlohmann::json WandbConfig(const RunRecord& run) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : run.config.items()) out[k] = {{"value", v}, {"desc", nullptr}};
  out["_transferbench"] = {{"value", {{"run_id", run.id}, {"config_hash", run.config_hash},
                                      {"environment", run.environment}}},
                           {"desc", nullptr}};
  return out;
}

// W&B's group of a run: its suite at its commit ("nightly@3f2c1ab", "-dirty" when the tree was),
// so that one night's runs group together; the suite alone without a commit.
std::string NightGroup(const RunRecord& run) {
  if (run.suite.empty() || run.git_commit.empty()) return run.suite;
  return fmt::format("{}@{}{}", run.suite, run.git_commit.substr(0, 7), run.git_dirty ? "-dirty" : "");
}

// The tags that name the night: suite:<suite> and commit:<7 digits>, where known.
std::vector<std::string> NightTags(const RunRecord& run) {
  std::vector<std::string> tags;
  if (!run.suite.empty()) tags.push_back(SuiteTag(run.suite));
  if (!run.git_commit.empty()) tags.push_back("commit:" + run.git_commit.substr(0, 7));
  return tags;
}

std::string DisplayName(const RunRecord& run) {
  auto get = [&](const char* k) {
    return run.config.contains(k) && run.config[k].is_string() ? run.config[k].get<std::string>() : std::string("?");
  };
  return fmt::format("{} {} {}→{} s{} {}", run.method, run.dataset, get("arch_b"), get("arch_a"), run.seed, get("source"));
}

// History lines from metric rows past the cursor: consecutive rows with one step and distinct
// keys form one line. The last group is left open (not returned) while the run may still add
// to it. Returns {lines, id of the last row in the last returned line}.
std::pair<std::vector<std::string>, int64_t> HistoryLines(const std::vector<MetricRow>& rows, bool closed,
                                                          int64_t first_step_index, double started_at,
                                                          int64_t max_lines) {
  std::vector<std::string> lines;
  int64_t last_id = 0;
  size_t i = 0;
  while (i < rows.size() && static_cast<int64_t>(lines.size()) < max_lines) {
    size_t j = i;
    nlohmann::json line = nlohmann::json::object();
    while (j < rows.size() && rows[j].step == rows[i].step && !line.contains(rows[j].key)) {
      if (!rows[j].data.empty()) {
        line[rows[j].key] = nlohmann::json::parse(rows[j].data);  // a histogram, as W&B's SDK sends it
      } else {
        line[rows[j].key] = std::isfinite(rows[j].value) ? nlohmann::json(rows[j].value) : nlohmann::json();
      }
      ++j;
    }
    if (j == rows.size() && !closed) break;  // the open tail
    line["_step"] = first_step_index + static_cast<int64_t>(lines.size());
    line["_timestamp"] = rows[j - 1].time;
    line["_runtime"] = std::max(0.0, rows[j - 1].time - started_at);
    line["step"] = rows[i].step;
    lines.push_back(line.dump());
    last_id = rows[j - 1].id;
    i = j;
  }
  return {lines, last_id};
}

std::string FormatConsoleLine(const LogLine& l) {
  const auto secs = static_cast<time_t>(l.time);
  const int micros = static_cast<int>((l.time - static_cast<double>(secs)) * 1e6);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:06d} {}", buf, micros, l.line);
}

int FinalExitCode(const RunRecord& run) {
  if (run.status == RunStatus::kFinished) return run.exit_code.value_or(0);
  if (run.status == RunStatus::kCrashed) return 1;  // no exit code was recorded
  const int code = run.exit_code.value_or(1);
  return code == 0 ? 1 : code;
}

}  // namespace

std::string WandbSettings::Sink() const {
  std::string url = base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  return fmt::format("wandb {} {}/{}", url, entity.empty() ? "-" : entity, project);
}

std::vector<std::string> WandbSettings::OptionNames() {
  return {"wandb.backoff_initial", "wandb.backoff_max", "wandb.base_url", "wandb.entity", "wandb.finish_timeout",
          "wandb.group", "wandb.interval", "wandb.max_lines", "wandb.mode", "wandb.project", "wandb.tags",
          "wandb.timeout"};
}

std::string NetrcPassword(const std::string& base_url) {
  std::string path = Env("NETRC");
  if (path.empty()) path = Env("HOME") + "/.netrc";
  std::ifstream in(path);
  if (!in) return "";
  const std::string host = HostOf(base_url);
  std::string bare_host = host.substr(0, host.find(':'));
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    if (tokens[i] != "machine" || (tokens[i + 1] != host && tokens[i + 1] != bare_host)) continue;
    for (size_t j = i + 2; j + 1 < tokens.size() && tokens[j] != "machine"; ++j) {
      if (tokens[j] == "password") return tokens[j + 1];
    }
  }
  return "";
}

WandbSettings WandbSettings::Resolve(const std::map<std::string, std::string>& overrides) {
  WandbSettings s;
  if (auto v = Env("WANDB_MODE"); !v.empty()) s.mode = v;
  if (auto v = Env("WANDB_BASE_URL"); !v.empty()) s.base_url = v;
  s.entity = Env("WANDB_ENTITY");
  if (auto v = Env("WANDB_PROJECT"); !v.empty()) s.project = v;
  s.group = Env("WANDB_RUN_GROUP");
  s.tags = SplitTags(Env("WANDB_TAGS"));
  for (const auto& [key, value] : overrides) {
    if (key == "wandb.mode") s.mode = value;
    else if (key == "wandb.base_url") s.base_url = value;
    else if (key == "wandb.entity") s.entity = value;
    else if (key == "wandb.project") s.project = value;
    else if (key == "wandb.group") s.group = value;
    else if (key == "wandb.tags") s.tags = SplitTags(value);
    else if (key == "wandb.timeout") s.timeout = ParsePositive(key, value);
    else if (key == "wandb.finish_timeout") s.finish_timeout = ParsePositive(key, value);
    else if (key == "wandb.interval") s.interval = ParsePositive(key, value);
    else if (key == "wandb.backoff_initial") s.backoff_initial = ParsePositive(key, value);
    else if (key == "wandb.backoff_max") s.backoff_max = ParsePositive(key, value);
    else if (key == "wandb.max_lines") s.max_lines = ParseCount(key, value, 1000000);
    else throw BadInput(fmt::format("unknown option '{}' (accepted: {})", key, fmt::join(OptionNames(), ", ")));
  }
  if (s.mode == "dryrun") s.mode = "offline";
  if (s.mode == "run" || s.mode == "shared") s.mode = "online";
  if (s.mode != "online" && s.mode != "offline" && s.mode != "disabled") {
    throw BadInput(fmt::format("WANDB_MODE={}: expected online, offline or disabled", s.mode));
  }
  while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
  if (s.base_url.rfind("http://", 0) != 0 && s.base_url.rfind("https://", 0) != 0) {
    throw BadInput(fmt::format("WANDB_BASE_URL={}: expected an http:// or https:// URL", s.base_url));
  }
  if (auto key = Env("WANDB_API_KEY"); !key.empty()) {
    s.api_key = key;
    s.key_source = "WANDB_API_KEY";
  } else if (auto netrc = NetrcPassword(s.base_url); !netrc.empty()) {
    s.api_key = netrc;
    s.key_source = "~/.netrc";
  }
  return s;
}

bool WandbClient::Post(const std::string& path, const nlohmann::json& body, double deadline,
                       nlohmann::json& response) {
  static thread_local std::mt19937_64 jitter_rng(std::random_device{}());
  const std::string url = settings_.base_url + path;
  const std::string payload = body.dump();
  double backoff = settings_.backoff_initial;
  for (int attempt = 0;; ++attempt) {
    if (cap_) deadline = std::min(deadline, cap_->load());
    if (not_before_ > NowSeconds()) {
      if (not_before_ >= deadline) return false;
      SleepFor(not_before_ - NowSeconds());
    }
    const double remaining = deadline - NowSeconds();
    if (remaining <= 0) return false;
    ++counters_.requests;
    HttpResponse r =
        http_.PostJson(url, payload, BasicAuth{"api", settings_.api_key}, std::min(settings_.timeout, remaining), cap_);
    if (r.status >= 200 && r.status < 300) {
      not_before_ = 0;
      try {
        response = r.body.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.body);
      } catch (const nlohmann::json::exception&) {
        response = nlohmann::json::object();
      }
      if (response.is_object() && response.contains("errors") && !response["errors"].empty()) {
        throw WandbFatalError(fmt::format("{} answered with GraphQL errors: {}", url, response["errors"].dump()));
      }
      return true;
    }
    // UpsertBucket's 409 (a concurrent update of the run) is worth retrying, as the SDK does.
    if (IsFatal(r.status) && !(r.status == 409 && path == "/graphql")) {
      throw WandbFatalError(fmt::format("HTTP {} from {}: {}", r.status, url, FatalHint(r.status)));
    }
    ++counters_.failures;
    double wait;
    if (r.status == 429 && r.retry_after >= 0) {
      wait = r.retry_after;
    } else {
      std::uniform_real_distribution<double> jitter(0.0, 0.25);
      wait = std::min(settings_.backoff_max, backoff * (1.0 + jitter(jitter_rng)));
      backoff *= 2;
    }
    not_before_ = NowSeconds() + wait;  // also honoured by the next call, if this one gives up
    if (not_before_ >= deadline) return false;
    ++counters_.retries;
    SleepFor(wait);
  }
}

WandbSync::WandbSync(RunStore& store, WandbSettings settings, std::string owner)
    : store_(store), outbox_(store, settings.Sink()), client_(std::move(settings)), owner_(std::move(owner)) {}

SyncReport WandbSync::SyncRun(const std::string& run_id, double deadline) {
  SyncReport report;
  const auto run = store_.GetRun(run_id);
  if (!run) throw BadInput(fmt::format("run '{}': no such run in {}", run_id, store_.path()));
  constexpr double kLeaseSeconds = 60;  // renewed after every acknowledged request
  if (!outbox_.TryLease(run->id, owner_, kLeaseSeconds)) {
    report.leased = false;
    return report;
  }
  struct LeaseGuard {
    Outbox& outbox;
    const std::string& run, & owner;
    ~LeaseGuard() {
      try {
        outbox.ReleaseLease(run, owner);
      } catch (...) {
      }
    }
  } guard{outbox_, run->id, owner_};

  SyncState s = outbox_.Get(run->id);
  const WandbSettings& cfg = client_.settings();
  nlohmann::json response;
  try {
    if (s.Superseded(run->heartbeat_at)) {
      // W&B holds a crash for a run that turned out alive: resume the W&B run (UpsertBucket
      // again, below) and go on from the cursors, so nothing already there is sent twice.
      outbox_.Reopen(run->id);
      s = outbox_.Get(run->id);
    }
    if (s.final_sent) {
      report.done = true;
      return report;
    }
    if (s.remote_id.empty()) {
      std::vector<std::string> tags = run->tags;
      tags.insert(tags.end(), cfg.tags.begin(), cfg.tags.end());
      // A dashboard filters one night: the suite and the commit as tags too.
      for (const std::string& t : NightTags(*run)) {
        if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
      }
      nlohmann::json vars = {
          {"id", nullptr}, {"name", run->id}, {"project", cfg.project},
          {"entity", cfg.entity.empty() ? nlohmann::json() : nlohmann::json(cfg.entity)},
          {"groupName", cfg.group.empty() ? NightGroup(*run) : cfg.group}, {"description", nullptr},
          {"displayName", DisplayName(*run)}, {"notes", run->error.empty() ? nlohmann::json() : nlohmann::json(run->error)},
          {"commit", run->git_commit}, {"config", WandbConfig(*run).dump()}, {"host", run->host},
          {"debug", nullptr}, {"program", "transferbench"}, {"repo", nullptr}, {"jobType", run->method},
          {"state", nullptr}, {"sweep", nullptr}, {"tags", tags}, {"summaryMetrics", nullptr}};
      if (!client_.Post("/graphql", {{"query", kUpsertBucket}, {"variables", vars}, {"operationName", "UpsertBucket"}},
                        deadline, response)) {
        return report;
      }
      std::string project, entity, name;
      try {
        const auto& bucket = response.at("data").at("upsertBucket").at("bucket");
        project = bucket.at("project").at("name").get<std::string>();
        entity = bucket.at("project").at("entity").at("name").get<std::string>();
        name = bucket.at("name").get<std::string>();
      } catch (const nlohmann::json::exception&) {
        throw WandbFatalError(fmt::format("{}/graphql: UpsertBucket answered without bucket.name and "
                                          "bucket.project.{{name, entity.name}}", cfg.base_url));
      }
      if (entity.empty() || project.empty() || name.empty()) {
        throw WandbFatalError(fmt::format("{}/graphql: UpsertBucket answered with an empty name", cfg.base_url));
      }
      s.remote_id = fmt::format("{}/{}/{}", entity, project, name);
      outbox_.Acknowledge(s);
    }
    report.remote = s.remote_id;
    const std::string stream = "/files/" + s.remote_id + "/file_stream";
    // A crash the store derived from a stale heartbeat (the row still says running, so it has
    // no ended_at) is sent as the final state, but only provisionally: see Superseded. The run's
    // own process knows it is alive (it was suspended), so its live sender never sends that.
    const bool derived_crash = run->status == RunStatus::kCrashed && run->ended_at == 0;
    const bool own_run = run->host == HostName() && run->pid == static_cast<int64_t>(getpid());
    const bool ended = run->status != RunStatus::kRunning && !(derived_crash && own_run);

    // Data: history and console lines in chunks, then the summary.
    while (true) {
      constexpr int64_t kBatchRows = 20000;
      const auto rows = store_.Metrics(run->id, s.metrics_cursor, kBatchRows);
      // A full batch may have cut the last group short: keep it open until the next batch.
      const bool closed = ended && static_cast<int64_t>(rows.size()) < kBatchRows;
      auto [lines, last_id] = HistoryLines(rows, closed, s.history_sent, run->started_at, cfg.max_lines);
      const auto logs = store_.Logs(run->id, s.logs_cursor, cfg.max_lines);
      if (lines.empty() && logs.empty()) break;
      nlohmann::json files = nlohmann::json::object();
      if (!lines.empty()) files["wandb-history.jsonl"] = {{"offset", s.history_sent}, {"content", lines}};
      if (!logs.empty()) {
        std::vector<std::string> out;
        for (const auto& l : logs) out.push_back(FormatConsoleLine(l));
        files["output.log"] = {{"offset", s.output_sent}, {"content", out}};
      }
      if (!client_.Post(stream, {{"files", files}}, deadline, response)) return report;
      if (!lines.empty()) {
        s.history_sent += static_cast<int64_t>(lines.size());
        s.metrics_cursor = last_id;
        report.history_lines += static_cast<int64_t>(lines.size());
      }
      if (!logs.empty()) {
        s.output_sent += static_cast<int64_t>(logs.size());
        s.logs_cursor = logs.back().id;
        report.console_lines += static_cast<int64_t>(logs.size());
      }
      outbox_.Acknowledge(s);
      outbox_.TryLease(run->id, owner_, kLeaseSeconds);
    }
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& [k, v] : store_.Summary(run->id)) summary[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
    if (!summary.empty()) {
      const std::string line = summary.dump();
      const std::string digest = Sha256Hex(line);
      if (digest != s.summary_hash) {
        if (!client_.Post(stream, {{"files", {{"wandb-summary.json", {{"offset", 0}, {"content", {line}}}}}}}, deadline,
                          response)) {
          return report;
        }
        s.summary_hash = digest;
        outbox_.Acknowledge(s);
        report.summary_sent = true;
      }
    }
    if (ended) {
      if (!client_.Post(stream, {{"complete", true}, {"exitcode", FinalExitCode(*run)}}, deadline, response)) {
        return report;
      }
      s.final_sent = true;
      s.crash_heartbeat = derived_crash ? std::optional<double>(run->heartbeat_at) : std::nullopt;
      outbox_.Acknowledge(s);
      report.final_sent = true;
      report.done = true;
    }
  } catch (const WandbFatalError& e) {
    outbox_.RecordError(run->id, e.what());
    throw;
  }
  return report;
}

void WandbSync::KeepAlive(const std::string& remote, double deadline) {
  nlohmann::json response;
  client_.Post("/files/" + remote + "/file_stream", nlohmann::json::object(), deadline, response);
}

WandbLogger::WandbLogger(const std::string& store_path, std::string run_id, WandbSettings settings)
    : store_path_(store_path), run_id_(std::move(run_id)), settings_(std::move(settings)) {
  thread_ = std::thread(&WandbLogger::Loop, this);
}

WandbLogger::~WandbLogger() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    if (final_deadline_ == 0) final_deadline_ = NowSeconds();
    cap_ = final_deadline_;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WandbLogger::RunEnded(RunStatus, int, const std::string&) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ended_ = true;
    final_deadline_ = NowSeconds() + settings_.finish_timeout;
    cap_ = final_deadline_;  // a pass already under way obeys it too
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WandbLogger::Loop() {
  const std::string owner = fmt::format("{}:{}:live:{}", HostName(), getpid(), run_id_.substr(0, 8));
  try {
    RunStore store(store_path_);
    WandbSync sync(store, settings_, owner);
    sync.client().SetDeadlineCap(&cap_);
    double last_sent = NowSeconds();
    constexpr double kKeepAliveSeconds = 25;  // W&B marks a run silent for ~30 s as crashed
    while (true) {
      bool final_pass;
      double deadline;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_for(lock, std::chrono::duration<double>(settings_.interval), [&] { return ended_ || stop_; });
        final_pass = ended_ || stop_;
        // While the run is live a pass may take one request's time; at the end, what is left
        // of finish_timeout.
        deadline = final_pass ? final_deadline_ : NowSeconds() + settings_.timeout;
      }
      SyncReport r = sync.SyncRun(run_id_, deadline);
      if (r.sent_anything()) {
        last_sent = NowSeconds();
      } else if (!r.remote.empty() && NowSeconds() - last_sent > kKeepAliveSeconds) {
        sync.KeepAlive(r.remote, deadline);
        last_sent = NowSeconds();
      }
      if (final_pass) {
        if (!r.done) {
          std::cerr << fmt::format("wandb: run {} not fully sent within {} s; `transferbench sync {}` sends the rest\n",
                                   run_id_.substr(0, 8), settings_.finish_timeout, run_id_.substr(0, 8));
        }
        return;
      }
    }
  } catch (const WandbFatalError& e) {
    std::cerr << fmt::format("wandb: stopped sending run {}: {}. The run goes on; `transferbench sync` sends it later.\n",
                             run_id_.substr(0, 8), e.what());
  } catch (const std::exception& e) {
    std::cerr << fmt::format("wandb: stopped sending run {}: {}\n", run_id_.substr(0, 8), e.what());
  }
}

}  // namespace tb
