// The SQLite run store: the one source of truth for runs, metrics, summaries, tags,
// artifacts, the model zoo's index and the sinks' sync state.
//
//   tb::RunStore store("results/runs.db");
//   std::string id = store.CreateRun(new_run);
//   store.AppendMetrics(id, {{/*step=*/0, "train/loss", 0.7, tb::NowSeconds()}});
//   store.SetSummary(id, {{"transfer_rate", 0.98}});
//   store.FinishRun(id, tb::RunStatus::kFinished, /*exit_code=*/0, "");
//
// One database file in WAL mode with a busy timeout, foreign keys on, the schema version in
// PRAGMA user_version with forward migrations. Every write is one IMMEDIATE transaction, so
// several processes can write at once. A RunStore object is one connection: use one per
// thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace SQLite {
class Database;
}

namespace tb {

enum class RunStatus { kRunning, kFinished, kFailed, kCrashed };
std::string ToString(RunStatus status);
RunStatus ParseRunStatus(const std::string& text);

// Seconds since the Unix epoch, with sub-second precision.
double NowSeconds();

struct NewRun {
  std::string suite;
  std::string method;
  std::string loss;
  std::string scenario;
  std::string dataset;
  int64_t seed = 0;
  nlohmann::json config = nlohmann::json::object();
  std::string config_hash;
  nlohmann::json environment = nlohmann::json::object();
  std::string git_commit;
  bool git_dirty = false;
  std::vector<std::string> tags;
};

struct RunRecord {
  std::string id;
  std::string suite, method, loss, scenario, dataset;
  int64_t seed = 0;
  nlohmann::json config;
  std::string config_hash;
  // As stored, except that a run still marked running whose process is gone (same host, pid
  // not alive) or whose heartbeat is stale is reported as kCrashed.
  RunStatus status = RunStatus::kRunning;
  std::optional<int> exit_code;
  std::string error;
  double started_at = 0, ended_at = 0, heartbeat_at = 0;
  std::string host;
  int64_t pid = 0;
  std::string git_commit;
  bool git_dirty = false;
  nlohmann::json environment;
  std::vector<std::string> tags;
};

struct MetricRow {
  int64_t step = 0;
  std::string key;
  double value = 0;
  double time = 0;
  int64_t id = 0;  // the row's id in the store (0 until stored); increases in logging order
  // A structured value as JSON (W&B's media object: {"_type": "histogram", ...}); empty for a
  // scalar. `value` is then the number of samples it summarises.
  std::string data;
};

struct LogLine {
  int64_t id = 0;  // 0 until stored
  std::string line;
  double time = 0;
};

struct ModelRecord {
  std::string hash;
  std::string path;
  nlohmann::json spec;     // everything that determined the weights
  nlohmann::json metrics;  // e.g. validation and test accuracy after training
  double train_seconds = 0;
  double created_at = 0;
};

// The tag that makes a run made by one suite a member of another that found it already done.
inline std::string SuiteTag(const std::string& suite) { return "suite:" + suite; }

// A suite name names its report files, so it is a plain file name: letters, digits, '.', '_'
// and '-', starting with a letter or digit, at most 100 characters. BadInput otherwise.
void CheckSuiteName(const std::string& name);

struct RunFilter {
  std::optional<std::string> suite;  // runs made by the suite, or tagged SuiteTag(suite)
  std::optional<std::string> method;
  std::optional<RunStatus> status;
  int limit = 0;  // 0: no limit; otherwise the newest `limit` runs
};

class RunStore {
 public:
  static constexpr int kSchemaVersion = 3;

  // Opens (creating if needed) and migrates the database; ":memory:" works for tests.
  explicit RunStore(const std::string& path);
  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  const std::string& path() const { return path_; }
  int SchemaVersion();

  // Run lifecycle.
  std::string CreateRun(const NewRun& run);
  void AppendMetrics(const std::string& run_id, const std::vector<MetricRow>& rows);
  void AppendLogs(const std::string& run_id, const std::vector<LogLine>& lines);
  void SetSummary(const std::string& run_id, const std::map<std::string, double>& values);
  void AddTags(const std::string& run_id, const std::vector<std::string>& tags);
  // Tags SuiteTag(suite) on those of `run_ids` that another suite made (one transaction).
  void TagSuiteMembers(const std::vector<std::string>& run_ids, const std::string& suite);
  void AddArtifact(const std::string& run_id, const std::string& path, const std::string& kind);
  void Heartbeat(const std::string& run_id);
  void FinishRun(const std::string& run_id, RunStatus status, int exit_code,
                 const std::string& error);

  // Queries. `id_or_prefix` may be a unique prefix of a run id (as git accepts short hashes).
  std::optional<RunRecord> GetRun(const std::string& id_or_prefix);
  std::vector<RunRecord> ListRuns(const RunFilter& filter = {});
  // Rows in logging order, those with id > after_id, at most `limit` (0: all).
  std::vector<MetricRow> Metrics(const std::string& run_id, int64_t after_id = 0, int64_t limit = 0);
  std::vector<LogLine> Logs(const std::string& run_id, int64_t after_id = 0, int64_t limit = 0);
  std::map<std::string, double> Summary(const std::string& run_id);
  // The newest finished run with this config hash, if any (suites skip those).
  std::optional<std::string> FinishedRunWithHash(const std::string& config_hash);

  // The model zoo's index.
  void PutModel(const ModelRecord& model);
  std::optional<ModelRecord> GetModel(const std::string& hash);
  // The model records whose spec has "grid": `grid` (a zoo grid's checkpoints and units), by hash.
  std::vector<ModelRecord> ModelsOfGrid(const std::string& grid);
  // How many of those are training units (their spec has an "index"), counted in SQL: a build's
  // progress line asks twice a second.
  int64_t CountGridUnits(const std::string& grid);

  // A run marked running whose heartbeat is older than this is shown as crashed.
  // Default 120 s; TRANSFERBENCH_STALE_SECONDS overrides it.
  static double StaleSeconds();

  SQLite::Database& db() { return *db_; }

 private:
  void Migrate();
  RunRecord ReadRun(const std::string& id);

  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
};

// This machine's host name, as stored in runs.host.
std::string HostName();

// Whether a process of this host with this pid exists.
bool ProcessAlive(int64_t pid);

}  // namespace tb
