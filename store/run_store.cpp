#include "store/run_store.h"

#include <algorithm>
#include <cctype>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdlib>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "store/errors.h"
#include "store/filesystem.h"
#include "store/hash.h"

namespace tb {
namespace {

// Forward migrations: entry i takes the schema from version i to i + 1. Never edit an
// entry once released; append a new one.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE runs (
  id            TEXT PRIMARY KEY,
  suite         TEXT NOT NULL DEFAULT '',
  method        TEXT NOT NULL,
  loss          TEXT NOT NULL DEFAULT '',
  scenario      TEXT NOT NULL DEFAULT '',
  dataset       TEXT NOT NULL DEFAULT '',
  seed          INTEGER NOT NULL DEFAULT 0,
  config        TEXT NOT NULL,
  config_hash   TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'crashed')),
  exit_code     INTEGER,
  error         TEXT NOT NULL DEFAULT '',
  started_at    REAL NOT NULL,
  ended_at      REAL,
  heartbeat_at  REAL NOT NULL,
  host          TEXT NOT NULL DEFAULT '',
  pid           INTEGER NOT NULL DEFAULT 0,
  git_commit    TEXT NOT NULL DEFAULT '',
  git_dirty     INTEGER NOT NULL DEFAULT 0,
  environment   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_config_hash ON runs (config_hash, status);
CREATE INDEX runs_suite ON runs (suite, started_at);
CREATE TABLE metrics (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step    INTEGER NOT NULL,
  key     TEXT NOT NULL,
  value   REAL,
  time    REAL NOT NULL
);
CREATE INDEX metrics_run ON metrics (run_id, id);
CREATE TABLE summary (
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  key     TEXT NOT NULL,
  value   REAL,
  PRIMARY KEY (run_id, key)
);
CREATE TABLE tags (
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  tag     TEXT NOT NULL,
  PRIMARY KEY (run_id, tag)
);
CREATE TABLE artifacts (
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  path    TEXT NOT NULL,
  kind    TEXT NOT NULL DEFAULT '',
  sha256  TEXT NOT NULL,
  bytes   INTEGER NOT NULL,
  PRIMARY KEY (run_id, path)
);
CREATE TABLE models (
  hash          TEXT PRIMARY KEY,
  path          TEXT NOT NULL,
  spec          TEXT NOT NULL,
  metrics       TEXT NOT NULL DEFAULT '{}',
  train_seconds REAL NOT NULL DEFAULT 0,
  created_at    REAL NOT NULL
);
CREATE TABLE sync_state (
  run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  sink          TEXT NOT NULL,
  remote_id     TEXT NOT NULL DEFAULT '',
  history_sent  INTEGER NOT NULL DEFAULT 0,
  summary_hash  TEXT NOT NULL DEFAULT '',
  final_sent    INTEGER NOT NULL DEFAULT 0,
  state         TEXT NOT NULL DEFAULT '{}',
  updated_at    REAL NOT NULL,
  PRIMARY KEY (run_id, sink)
);
)sql",
    // 2: console lines of a run (W&B's output.log), and what the outbox needs to send each
    // sink exactly once: cursors into metrics and logs, and a lease so that one sender at a
    // time works on a run.
    R"sql(
CREATE TABLE logs (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  line    TEXT NOT NULL,
  time    REAL NOT NULL
);
CREATE INDEX logs_run ON logs (run_id, id);
ALTER TABLE sync_state ADD COLUMN metrics_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN output_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN logs_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_state ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
)sql",
    // 3: a metric row may carry a structured value (W&B's JSON of a histogram), its `value`
    // then the number of samples it summarises.
    R"sql(
ALTER TABLE metrics ADD COLUMN data TEXT;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == RunStore::kSchemaVersion,
              "one migration per schema version");

}  // namespace

bool ProcessAlive(int64_t pid) {
  if (pid <= 0) return false;
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string ToString(RunStatus status) {
  switch (status) {
    case RunStatus::kRunning: return "running";
    case RunStatus::kFinished: return "finished";
    case RunStatus::kFailed: return "failed";
    case RunStatus::kCrashed: return "crashed";
  }
  return "unknown";
}

RunStatus ParseRunStatus(const std::string& text) {
  if (text == "running") return RunStatus::kRunning;
  if (text == "finished") return RunStatus::kFinished;
  if (text == "failed") return RunStatus::kFailed;
  if (text == "crashed") return RunStatus::kCrashed;
  throw BadInput(fmt::format("run status '{}': expected running, finished, failed or crashed", text));
}

double NowSeconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

void CheckSuiteName(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 100 && std::isalnum(static_cast<unsigned char>(name[0])) &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                  });
  if (!ok) {
    throw BadInput(fmt::format("suite name '{}': expected letters, digits, '.', '_' or '-', starting with a letter or "
                               "digit, at most 100 characters (it names the report files)",
                               name));
  }
  // Taken by report files: all.* is the report of every suite, <suite>-claims.csv a suite's
  // claims, <suite>-<protocol>.* its other protocols' tables.
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const char* suffix : {"-claims", "-merge", "-continual", "-zoo"}) {
    if (name == "all" || ends_with(suffix)) {
      throw BadInput(fmt::format("suite name '{}': reserved (all.* is the report of every suite; NAME-claims, "
                                 "NAME-merge, NAME-continual and NAME-zoo a suite's other tables)",
                                 name));
    }
  }
}

double RunStore::StaleSeconds() {
  if (const char* env = std::getenv("TRANSFERBENCH_STALE_SECONDS")) {
    char* end = nullptr;
    double v = std::strtod(env, &end);
    // At least three heartbeat periods (10 s each), so a live run is never taken for a dead one.
    if (end != env && *end == '\0' && v >= 30 && std::isfinite(v)) return v;
    throw BadInput(fmt::format("TRANSFERBENCH_STALE_SECONDS={}: expected a finite number of seconds >= 30", env));
  }
  return 120.0;
}

RunStore::RunStore(const std::string& path) : path_(path) {
  if (path != ":memory:" && std::getenv("TRANSFERBENCH_ALLOW_NETWORK_FS") == nullptr) {
    if (const auto network = NetworkFilesystem(path)) {
      throw BadInput(fmt::format("{}: the run store is on a network filesystem ({}), where SQLite's WAL mode is unsafe; "
                                 "expected a local disk (--results on local storage; set "
                                 "TRANSFERBENCH_ALLOW_NETWORK_FS=1 to take the risk)",
                                 path, *network));
    }
  }
  try {
    db_ = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  } catch (const SQLite::Exception& e) {
    throw BadInput(fmt::format("{}: cannot open the run store ({})", path, e.what()));
  }
  db_->setBusyTimeout(30000);
  if (path != ":memory:") db_->exec("PRAGMA journal_mode = WAL");
  db_->exec("PRAGMA synchronous = NORMAL");
  db_->exec("PRAGMA foreign_keys = ON");
  Migrate();
}

RunStore::~RunStore() = default;

int RunStore::SchemaVersion() { return db_->execAndGet("PRAGMA user_version").getInt(); }

void RunStore::Migrate() {
  // Quick check first, so that readers do not take the write lock.
  int version = SchemaVersion();
  if (version == kSchemaVersion) return;
  if (version > kSchemaVersion) {
    throw BadInput(fmt::format("{}: schema version {} is newer than this build understands ({})",
                               path_, version, kSchemaVersion));
  }
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  version = SchemaVersion();  // another process may have migrated meanwhile
  for (; version < kSchemaVersion; ++version) {
    db_->exec(kMigrations[version]);
    db_->exec(fmt::format("PRAGMA user_version = {}", version + 1));
  }
  tx.commit();
}

std::string RunStore::CreateRun(const NewRun& run) {
  const std::string id = NewUuid();
  const double now = NowSeconds();
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement insert(*db_, R"sql(
    INSERT INTO runs (id, suite, method, loss, scenario, dataset, seed, config, config_hash,
                      status, started_at, heartbeat_at, host, pid, git_commit, git_dirty,
                      environment)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?))sql");
  insert.bind(1, id);
  insert.bind(2, run.suite);
  insert.bind(3, run.method);
  insert.bind(4, run.loss);
  insert.bind(5, run.scenario);
  insert.bind(6, run.dataset);
  insert.bind(7, static_cast<int64_t>(run.seed));
  insert.bind(8, run.config.dump());
  insert.bind(9, run.config_hash.empty() ? JsonHash(run.config) : run.config_hash);
  insert.bind(10, now);
  insert.bind(11, now);
  insert.bind(12, HostName());
  insert.bind(13, static_cast<int64_t>(getpid()));
  insert.bind(14, run.git_commit);
  insert.bind(15, run.git_dirty ? 1 : 0);
  insert.bind(16, run.environment.dump());
  insert.exec();
  SQLite::Statement tag(*db_, "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)");
  for (const auto& t : run.tags) {
    tag.bind(1, id);
    tag.bind(2, t);
    tag.exec();
    tag.reset();
  }
  tx.commit();
  return id;
}

void RunStore::AppendMetrics(const std::string& run_id, const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement insert(*db_,
                           "INSERT INTO metrics (run_id, step, key, value, time, data) VALUES (?, ?, ?, ?, ?, ?)");
  for (const auto& r : rows) {
    insert.bind(1, run_id);
    insert.bind(2, static_cast<int64_t>(r.step));
    insert.bind(3, r.key);
    if (std::isfinite(r.value)) {
      insert.bind(4, r.value);
    } else {
      insert.bind(4);  // NULL: SQLite has no NaN; the key and step are still recorded
    }
    insert.bind(5, r.time);
    if (r.data.empty()) {
      insert.bind(6);
    } else {
      insert.bind(6, r.data);
    }
    insert.exec();
    insert.reset();
  }
  SQLite::Statement beat(*db_, "UPDATE runs SET heartbeat_at = ? WHERE id = ?");
  beat.bind(1, NowSeconds());
  beat.bind(2, run_id);
  beat.exec();
  tx.commit();
}

void RunStore::AppendLogs(const std::string& run_id, const std::vector<LogLine>& lines) {
  if (lines.empty()) return;
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement insert(*db_, "INSERT INTO logs (run_id, line, time) VALUES (?, ?, ?)");
  for (const auto& l : lines) {
    insert.bind(1, run_id);
    insert.bind(2, l.line);
    insert.bind(3, l.time);
    insert.exec();
    insert.reset();
  }
  tx.commit();
}

std::vector<LogLine> RunStore::Logs(const std::string& run_id, int64_t after_id, int64_t limit) {
  SQLite::Statement q(*db_, "SELECT id, line, time FROM logs WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?");
  q.bind(1, run_id);
  q.bind(2, after_id);
  q.bind(3, limit > 0 ? limit : int64_t{-1});
  std::vector<LogLine> out;
  while (q.executeStep()) {
    out.push_back(LogLine{q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getDouble()});
  }
  return out;
}

void RunStore::SetSummary(const std::string& run_id, const std::map<std::string, double>& values) {
  if (values.empty()) return;
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement upsert(*db_, R"sql(
    INSERT INTO summary (run_id, key, value) VALUES (?, ?, ?)
    ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value)sql");
  for (const auto& [key, value] : values) {
    upsert.bind(1, run_id);
    upsert.bind(2, key);
    if (std::isfinite(value)) {
      upsert.bind(3, value);
    } else {
      upsert.bind(3);
    }
    upsert.exec();
    upsert.reset();
  }
  tx.commit();
}

void RunStore::AddTags(const std::string& run_id, const std::vector<std::string>& tags) {
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement tag(*db_, "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)");
  for (const auto& t : tags) {
    tag.bind(1, run_id);
    tag.bind(2, t);
    tag.exec();
    tag.reset();
  }
  tx.commit();
}

void RunStore::TagSuiteMembers(const std::vector<std::string>& run_ids, const std::string& suite) {
  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement tag(*db_, "INSERT OR IGNORE INTO tags (run_id, tag) SELECT id, ? FROM runs WHERE id = ? AND suite != ?");
  for (const auto& id : run_ids) {
    tag.bind(1, SuiteTag(suite));
    tag.bind(2, id);
    tag.bind(3, suite);
    tag.exec();
    tag.reset();
  }
  tx.commit();
}

void RunStore::AddArtifact(const std::string& run_id, const std::string& path,
                           const std::string& kind) {
  const std::string sha = Sha256File(path);
  FILE* f = std::fopen(path.c_str(), "rb");
  int64_t bytes = 0;
  if (f) {
    std::fseek(f, 0, SEEK_END);
    bytes = std::ftell(f);
    std::fclose(f);
  }
  SQLite::Statement insert(*db_, R"sql(
    INSERT INTO artifacts (run_id, path, kind, sha256, bytes) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256,
                                             bytes = excluded.bytes)sql");
  insert.bind(1, run_id);
  insert.bind(2, path);
  insert.bind(3, kind);
  insert.bind(4, sha);
  insert.bind(5, bytes);
  insert.exec();
}

void RunStore::Heartbeat(const std::string& run_id) {
  SQLite::Statement beat(*db_, "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'");
  beat.bind(1, NowSeconds());
  beat.bind(2, run_id);
  beat.exec();
}

void RunStore::FinishRun(const std::string& run_id, RunStatus status, int exit_code,
                         const std::string& error) {
  SQLite::Statement update(*db_, R"sql(
    UPDATE runs SET status = ?, exit_code = ?, error = ?, ended_at = ?, heartbeat_at = ?
    WHERE id = ?)sql");
  const double now = NowSeconds();
  update.bind(1, ToString(status));
  update.bind(2, exit_code);
  update.bind(3, error);
  update.bind(4, now);
  update.bind(5, now);
  update.bind(6, run_id);
  if (update.exec() != 1) throw BadInput(fmt::format("run {}: no such run in {}", run_id, path_));
}

RunRecord RunStore::ReadRun(const std::string& id) {
  SQLite::Statement q(*db_, R"sql(
    SELECT id, suite, method, loss, scenario, dataset, seed, config, config_hash, status,
           exit_code, error, started_at, ended_at, heartbeat_at, host, pid, git_commit,
           git_dirty, environment
    FROM runs WHERE id = ?)sql");
  q.bind(1, id);
  if (!q.executeStep()) throw BadInput(fmt::format("run {}: no such run in {}", id, path_));
  RunRecord r;
  r.id = q.getColumn(0).getString();
  r.suite = q.getColumn(1).getString();
  r.method = q.getColumn(2).getString();
  r.loss = q.getColumn(3).getString();
  r.scenario = q.getColumn(4).getString();
  r.dataset = q.getColumn(5).getString();
  r.seed = q.getColumn(6).getInt64();
  r.config = nlohmann::json::parse(q.getColumn(7).getString());
  r.config_hash = q.getColumn(8).getString();
  r.status = ParseRunStatus(q.getColumn(9).getString());
  if (!q.getColumn(10).isNull()) r.exit_code = q.getColumn(10).getInt();
  r.error = q.getColumn(11).getString();
  r.started_at = q.getColumn(12).getDouble();
  r.ended_at = q.getColumn(13).isNull() ? 0.0 : q.getColumn(13).getDouble();
  r.heartbeat_at = q.getColumn(14).getDouble();
  r.host = q.getColumn(15).getString();
  r.pid = q.getColumn(16).getInt64();
  r.git_commit = q.getColumn(17).getString();
  r.git_dirty = q.getColumn(18).getInt() != 0;
  r.environment = nlohmann::json::parse(q.getColumn(19).getString());
  if (r.status == RunStatus::kRunning) {
    const bool stale = NowSeconds() - r.heartbeat_at > StaleSeconds();
    const bool gone = r.host == HostName() && !ProcessAlive(r.pid);
    if (stale || gone) r.status = RunStatus::kCrashed;
  }
  SQLite::Statement tags(*db_, "SELECT tag FROM tags WHERE run_id = ? ORDER BY tag");
  tags.bind(1, id);
  while (tags.executeStep()) r.tags.push_back(tags.getColumn(0).getString());
  return r;
}

std::optional<RunRecord> RunStore::GetRun(const std::string& id_or_prefix) {
  if (id_or_prefix.empty()) return std::nullopt;
  SQLite::Statement q(*db_, "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2");
  q.bind(1, id_or_prefix);
  q.bind(2, id_or_prefix + "\x7f");
  std::vector<std::string> ids;
  while (q.executeStep()) ids.push_back(q.getColumn(0).getString());
  if (ids.empty()) return std::nullopt;
  if (ids.size() > 1 && ids[0] != id_or_prefix) {
    throw BadInput(fmt::format("run '{}': ambiguous prefix (matches {} and {} at least)",
                               id_or_prefix, ids[0], ids[1]));
  }
  return ReadRun(ids[0]);
}

std::vector<RunRecord> RunStore::ListRuns(const RunFilter& filter) {
  std::string sql = "SELECT id FROM runs WHERE 1 = 1";
  // A suite's runs: those it made, and those it found already done (tagged "suite:NAME").
  if (filter.suite) sql += " AND (suite = :suite OR id IN (SELECT run_id FROM tags WHERE tag = :suite_tag))";
  if (filter.method) sql += " AND method = :method";
  sql += " ORDER BY started_at DESC, id";
  SQLite::Statement q(*db_, sql);
  if (filter.suite) {
    q.bind(":suite", *filter.suite);
    q.bind(":suite_tag", SuiteTag(*filter.suite));
  }
  if (filter.method) q.bind(":method", *filter.method);
  std::vector<std::string> ids;
  while (q.executeStep()) ids.push_back(q.getColumn(0).getString());
  std::vector<RunRecord> out;
  for (const auto& id : ids) {
    RunRecord r = ReadRun(id);
    // Status is filtered after the crash check, since "crashed" is partly derived.
    if (filter.status && r.status != *filter.status) continue;
    out.push_back(std::move(r));
    if (filter.limit > 0 && static_cast<int>(out.size()) >= filter.limit) break;
  }
  return out;
}

std::vector<MetricRow> RunStore::Metrics(const std::string& run_id, int64_t after_id, int64_t limit) {
  SQLite::Statement q(*db_,
                      "SELECT step, key, value, time, id, data FROM metrics WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?");
  q.bind(1, run_id);
  q.bind(2, after_id);
  q.bind(3, limit > 0 ? limit : int64_t{-1});
  std::vector<MetricRow> rows;
  while (q.executeStep()) {
    MetricRow r;
    r.step = q.getColumn(0).getInt64();
    r.key = q.getColumn(1).getString();
    r.value = q.getColumn(2).isNull() ? std::nan("") : q.getColumn(2).getDouble();
    r.time = q.getColumn(3).getDouble();
    r.id = q.getColumn(4).getInt64();
    if (!q.getColumn(5).isNull()) r.data = q.getColumn(5).getString();
    rows.push_back(std::move(r));
  }
  return rows;
}

std::map<std::string, double> RunStore::Summary(const std::string& run_id) {
  SQLite::Statement q(*db_, "SELECT key, value FROM summary WHERE run_id = ? ORDER BY key");
  q.bind(1, run_id);
  std::map<std::string, double> out;
  while (q.executeStep()) {
    out[q.getColumn(0).getString()] =
        q.getColumn(1).isNull() ? std::nan("") : q.getColumn(1).getDouble();
  }
  return out;
}

std::optional<std::string> RunStore::FinishedRunWithHash(const std::string& config_hash) {
  SQLite::Statement q(*db_, R"sql(
    SELECT id FROM runs WHERE config_hash = ? AND status = 'finished'
    ORDER BY ended_at DESC LIMIT 1)sql");
  q.bind(1, config_hash);
  if (q.executeStep()) return q.getColumn(0).getString();
  return std::nullopt;
}

void RunStore::PutModel(const ModelRecord& model) {
  SQLite::Statement upsert(*db_, R"sql(
    INSERT INTO models (hash, path, spec, metrics, train_seconds, created_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (hash) DO UPDATE SET path = excluded.path, spec = excluded.spec,
      metrics = excluded.metrics, train_seconds = excluded.train_seconds)sql");
  upsert.bind(1, model.hash);
  upsert.bind(2, model.path);
  upsert.bind(3, model.spec.dump());
  upsert.bind(4, model.metrics.dump());
  upsert.bind(5, model.train_seconds);
  upsert.bind(6, model.created_at > 0 ? model.created_at : NowSeconds());
  upsert.exec();
}

namespace {
ModelRecord ModelFromRow(SQLite::Statement& q) {
  ModelRecord m;
  m.hash = q.getColumn(0).getString();
  m.path = q.getColumn(1).getString();
  m.spec = nlohmann::json::parse(q.getColumn(2).getString());
  m.metrics = nlohmann::json::parse(q.getColumn(3).getString());
  m.train_seconds = q.getColumn(4).getDouble();
  m.created_at = q.getColumn(5).getDouble();
  return m;
}
}  // namespace

std::optional<ModelRecord> RunStore::GetModel(const std::string& hash) {
  SQLite::Statement q(*db_,
                      "SELECT hash, path, spec, metrics, train_seconds, created_at FROM models WHERE hash = ?");
  q.bind(1, hash);
  if (!q.executeStep()) return std::nullopt;
  return ModelFromRow(q);
}

int64_t RunStore::CountGridUnits(const std::string& grid) {
  SQLite::Statement q(*db_, "SELECT COUNT(*) FROM models WHERE json_extract(spec, '$.grid') = ? "
                            "AND json_extract(spec, '$.index') IS NOT NULL");
  q.bind(1, grid);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

std::vector<ModelRecord> RunStore::ModelsOfGrid(const std::string& grid) {
  SQLite::Statement q(*db_, "SELECT hash, path, spec, metrics, train_seconds, created_at FROM models "
                            "WHERE json_extract(spec, '$.grid') = ? ORDER BY hash");
  q.bind(1, grid);
  std::vector<ModelRecord> out;
  while (q.executeStep()) out.push_back(ModelFromRow(q));
  return out;
}

}  // namespace tb
