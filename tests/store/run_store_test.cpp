#include "store/run_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "store/errors.h"
#include "store/hash.h"
#include "store/logger.h"
#include "tests/test_util.h"

namespace tb {
namespace {

NewRun SampleRun(const std::string& method = "direct_copy", int64_t seed = 0) {
  NewRun r;
  r.suite = "test";
  r.method = method;
  r.dataset = "mnist";
  r.scenario = "A0123-B2345-T4";
  r.seed = seed;
  r.config = {{"method", method}, {"seed", seed}};
  r.tags = {"unit"};
  return r;
}

TEST(RunStoreTest, CreatesSchemaAtCurrentVersionWithWal) {
  testing::TempDir dir;
  RunStore store(dir / "runs.db");
  EXPECT_EQ(store.SchemaVersion(), RunStore::kSchemaVersion);
  EXPECT_EQ(store.db().execAndGet("PRAGMA journal_mode").getString(), "wal");
  EXPECT_EQ(store.db().execAndGet("PRAGMA foreign_keys").getInt(), 1);
  // Opening again does not migrate twice.
  RunStore again(dir / "runs.db");
  EXPECT_EQ(again.SchemaVersion(), RunStore::kSchemaVersion);
}

TEST(RunStoreTest, RefusesANewerSchema) {
  testing::TempDir dir;
  { RunStore store(dir / "runs.db"); store.db().exec("PRAGMA user_version = 99"); }
  try {
    RunStore store(dir / "runs.db");
    FAIL() << "expected BadInput";
  } catch (const BadInput& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
}

TEST(RunStoreTest, RunLifecycleAndQueries) {
  RunStore store(":memory:");
  const std::string id = store.CreateRun(SampleRun());
  EXPECT_EQ(id.size(), 36u);
  auto run = store.GetRun(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kRunning);  // this process is alive
  EXPECT_EQ(run->config_hash, JsonHash(SampleRun().config));
  EXPECT_EQ(run->tags, std::vector<std::string>{"unit"});
  EXPECT_EQ(run->pid, getpid());

  store.AppendMetrics(id, {{1, "loss", 0.5, 1.0}, {2, "loss", 0.25, 2.0}, {2, "acc", std::nan(""), 2.0}});
  store.SetSummary(id, {{"transfer_rate", 0.75}, {"preservation", 0.5}});
  store.SetSummary(id, {{"transfer_rate", 0.8}});  // upsert
  store.FinishRun(id, RunStatus::kFinished, 0, "");

  auto metrics = store.Metrics(id);
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[1].step, 2);
  EXPECT_DOUBLE_EQ(metrics[1].value, 0.25);
  EXPECT_TRUE(std::isnan(metrics[2].value));
  auto summary = store.Summary(id);
  EXPECT_DOUBLE_EQ(summary.at("transfer_rate"), 0.8);
  EXPECT_DOUBLE_EQ(summary.at("preservation"), 0.5);
  run = store.GetRun(id.substr(0, 8));
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kFinished);
  EXPECT_EQ(run->exit_code, 0);
  EXPECT_EQ(store.FinishedRunWithHash(run->config_hash), id);
  EXPECT_FALSE(store.FinishedRunWithHash("nope"));
  EXPECT_FALSE(store.GetRun("zzzz"));
}

TEST(RunStoreTest, ListFiltersBySuiteMethodAndStatus) {
  RunStore store(":memory:");
  const auto a = store.CreateRun(SampleRun("direct_copy", 0));
  const auto b = store.CreateRun(SampleRun("finetune", 1));
  store.FinishRun(a, RunStatus::kFinished, 0, "");
  store.FinishRun(b, RunStatus::kFailed, 2, "bad option");
  RunFilter f;
  f.method = "finetune";
  auto runs = store.ListRuns(f);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].error, "bad option");
  f = {};
  f.status = RunStatus::kFinished;
  ASSERT_EQ(store.ListRuns(f).size(), 1u);
  EXPECT_EQ(store.ListRuns(f)[0].id, a);
  f = {};
  f.suite = "other";
  EXPECT_TRUE(store.ListRuns(f).empty());
  // A suite that found run a done counts it as its own; its own runs get no tag.
  store.TagSuiteMembers({a}, "other");
  store.TagSuiteMembers({a}, "test");
  ASSERT_EQ(store.ListRuns(f).size(), 1u);
  EXPECT_EQ(store.ListRuns(f)[0].id, a);
  EXPECT_EQ(store.GetRun(a)->tags, (std::vector<std::string>{"suite:other", "unit"}));
  f.suite = "test";
  EXPECT_EQ(store.ListRuns(f).size(), 2u);
}

TEST(RunStoreTest, StaleHeartbeatShowsAsCrashed) {
  RunStore store(":memory:");
  const auto id = store.CreateRun(SampleRun());
  store.db().exec("UPDATE runs SET heartbeat_at = heartbeat_at - 1000");
  EXPECT_EQ(store.GetRun(id)->status, RunStatus::kCrashed);
  store.Heartbeat(id);
  EXPECT_EQ(store.GetRun(id)->status, RunStatus::kRunning);
  // Review 19.4: an infinite threshold would never show a dead run as crashed.
  for (const char* value : {"inf", "nan", "10"}) {
    setenv("TRANSFERBENCH_STALE_SECONDS", value, 1);
    EXPECT_THROW(RunStore::StaleSeconds(), BadInput) << value;
  }
  setenv("TRANSFERBENCH_STALE_SECONDS", "60", 1);
  EXPECT_EQ(RunStore::StaleSeconds(), 60.0);
  unsetenv("TRANSFERBENCH_STALE_SECONDS");
}

TEST(RunStoreTest, ModelsIndex) {
  RunStore store(":memory:");
  ModelRecord m{"abc", "/tmp/abc.pt", {{"arch", "wide"}}, {{"val_acc", 0.9}}, 1.5, 0};
  store.PutModel(m);
  auto got = store.GetModel("abc");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->spec["arch"], "wide");
  EXPECT_DOUBLE_EQ(got->metrics["val_acc"].get<double>(), 0.9);
  EXPECT_FALSE(store.GetModel("def"));
}

// Four processes write runs and metrics to one database at once; all succeed.
TEST(RunStoreTest, FourProcessesWriteConcurrently) {
  testing::TempDir dir;
  const std::string path = dir / "runs.db";
  { RunStore init(path); }
  constexpr int kProcesses = 4, kRuns = 5, kBatches = 10, kRows = 50;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        RunStore store(path);
        for (int r = 0; r < kRuns; ++r) {
          auto id = store.CreateRun(SampleRun("direct_copy", p * 100 + r));
          for (int b = 0; b < kBatches; ++b) {
            std::vector<MetricRow> rows;
            for (int i = 0; i < kRows; ++i) rows.push_back({b * kRows + i, "loss", 1.0 / (i + 1), NowSeconds()});
            store.AppendMetrics(id, rows);
          }
          store.SetSummary(id, {{"transfer_rate", p}});
          store.FinishRun(id, RunStatus::kFinished, 0, "");
        }
      } catch (const std::exception& e) {
        fprintf(stderr, "child %d: %s\n", p, e.what());
        code = 1;
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t c : children) {
    int status = 0;
    waitpid(c, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  RunStore store(path);
  RunFilter f;
  f.status = RunStatus::kFinished;
  EXPECT_EQ(store.ListRuns(f).size(), static_cast<size_t>(kProcesses * kRuns));
  EXPECT_EQ(store.db().execAndGet("SELECT COUNT(*) FROM metrics").getInt64(),
            int64_t{kProcesses} * kRuns * kBatches * kRows);
}

// A run killed with SIGKILL keeps every metric committed before the kill, and shows as crashed.
TEST(RunStoreTest, SigkilledRunKeepsCommittedMetricsAndShowsCrashed) {
  testing::TempDir dir;
  const std::string path = dir / "runs.db";
  std::string id;
  { RunStore init(path); id = init.CreateRun(SampleRun()); }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(ready[0]);
    RunStore store(path);
    store.db().exec("UPDATE runs SET pid = " + std::to_string(getpid()) + " WHERE id = '" + id + "'");
    SqliteLogger log(path, id, /*flush_rows=*/100);
    for (int i = 0; i < 1000; ++i) log.Scalar("loss", i, i);  // flushed in 10 batches
    if (write(ready[1], "x", 1) != 1) _exit(3);
    for (int i = 1000;; ++i) log.Scalar("unflushed", i, i);  // until killed; some may commit
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  RunStore store(path);
  auto run = store.GetRun(id);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, RunStatus::kCrashed);
  int64_t loss_rows = 0;
  for (const auto& m : store.Metrics(id)) {
    if (m.key == "loss") {
      EXPECT_EQ(m.value, static_cast<double>(loss_rows));
      ++loss_rows;
    }
  }
  EXPECT_EQ(loss_rows, 1000);
  EXPECT_EQ(store.db().execAndGet("PRAGMA integrity_check").getString(), "ok");
}

TEST(HashTest, KnownSha256AndCanonicalJson) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(JsonHash(nlohmann::json::parse(R"({"b": 1, "a": [1, 2]})")),
            JsonHash(nlohmann::json::parse(R"({"a": [1, 2], "b": 1})")));
  EXPECT_NE(NewUuid(), NewUuid());
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// A database written by schema version 1 (a real run of the first release) migrates forward
// with every stored value intact.
TEST(RunStoreMigrationTest, Version1DatabaseMigratesKeepingEverything) {
  testing::TempDir dir;
  const std::string path = dir / "runs.db";
  std::filesystem::copy_file(std::string(TB_TEST_DATA) + "/runs_v1.db", path);
  {
    SQLite::Database v1(path, SQLite::OPEN_READONLY);
    ASSERT_EQ(v1.execAndGet("PRAGMA user_version").getInt(), 1);
  }
  RunStore store(path);
  EXPECT_EQ(store.SchemaVersion(), RunStore::kSchemaVersion);
  auto runs = store.ListRuns();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].method, "finetune");
  EXPECT_EQ(runs[0].status, RunStatus::kFinished);
  EXPECT_EQ(store.Metrics(runs[0].id).size(), 11u);
  EXPECT_EQ(store.Summary(runs[0].id).size(), 19u);
  store.AppendLogs(runs[0].id, {{0, "a line", 1.0}});
  EXPECT_EQ(store.Logs(runs[0].id).size(), 1u);
  EXPECT_EQ(store.db().execAndGet("SELECT COUNT(*) FROM sync_state").getInt(), 0);
}

}  // namespace
}  // namespace tb
