// The W&B mirror against a local server that speaks W&B's protocol: real HTTP, real
// experiment processes, real SQLite.
#include <sys/socket.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <future>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "store/errors.h"
#include "store/outbox.h"
#include "store/run_store.h"
#include "store/wandb.h"
#include "tests/test_util.h"
#include "tests/wandb/fake_wandb.h"

namespace tb {
namespace {

using testing::FakeWandb;
using testing::RunCommand;

const std::string kBin = TB_BIN_DIR;
const std::string kKey = "tbkey0123456789abcdef0123456789abcdef01";  // 40 characters, like W&B's

std::string Env(const std::string& url, const std::string& key = kKey) {
  return "env -u WANDB_MODE NETRC=/nonexistent WANDB_BASE_URL=" + url + " WANDB_API_KEY=" + key +
         " WANDB_ENTITY=lab WANDB_PROJECT=tb-test ";
}

// The outbox of the destination that Env(url) configures.
Outbox MirrorOutbox(RunStore& store, const std::string& url) {
  WandbSettings s;
  s.base_url = url;
  s.entity = "lab";
  s.project = "tb-test";
  return Outbox(store, s.Sink());
}

// A small finetune run: ~250 metric rows, some console lines.
std::string Experiment(const std::string& results, const std::string& extra = "") {
  return kBin + "/exp_finetune --results " + results +
         " --set dataset=mnist --set data.train_per_class=100 --set train.epochs=2 --set arch=verydeep"
         " --set steps=200 --set threads=1 --set wandb.interval=0.2 --set wandb.timeout=0.5"
         " --set wandb.backoff_initial=0.05 --set wandb.backoff_max=0.2 --set wandb.max_lines=20 " + extra;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t n = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);  // nothing listens there now
  return ntohs(a.sin_port);
}

// Checks that the server holds exactly the stored run: every metric row once, in order, in
// lines numbered by _step; the summary; every console line; one final state.
void ExpectDeliveredExactly(FakeWandb& server, const std::string& db, int exit_code) {
  RunStore store(db);
  auto runs = store.ListRuns();
  ASSERT_FALSE(runs.empty());
  const auto all = server.runs();
  for (const auto& run : runs) {
    const std::string path = "lab/tb-test/" + run.id;
    ASSERT_TRUE(all.count(path)) << path;
    const auto& files = all.at(path).files;
    // History: the concatenation of the lines' (step, key, value) equals the stored rows.
    const auto rows = store.Metrics(run.id);
    std::vector<std::tuple<int64_t, std::string, double>> got;
    const auto& history = files.count("wandb-history.jsonl") ? files.at("wandb-history.jsonl") : std::vector<std::string>{};
    for (size_t i = 0; i < history.size(); ++i) {
      ASSERT_FALSE(history[i].empty()) << "hole at line " << i;
      auto line = nlohmann::json::parse(history[i]);
      EXPECT_EQ(line["_step"].get<int64_t>(), static_cast<int64_t>(i));
      EXPECT_TRUE(line.contains("_runtime") && line.contains("_timestamp"));
      for (const auto& [k, v] : line.items()) {
        if (k[0] == '_' || k == "step") continue;
        if (v.is_object()) {  // a histogram: W&B's object, its count the row's value
          ASSERT_EQ(v.at("_type"), "histogram") << k;
          double n = 0;
          for (const auto& c : v.at("values")) n += c.get<double>();
          got.emplace_back(line["step"].get<int64_t>(), k, n);
          continue;
        }
        got.emplace_back(line["step"].get<int64_t>(), k, v.is_null() ? std::nan("") : v.get<double>());
      }
    }
    ASSERT_EQ(got.size(), rows.size()) << run.id;
    // Within a line keys are sorted; compare as multisets per line-order run of one step.
    std::multiset<std::tuple<int64_t, std::string, double>> a(got.begin(), got.end()), b;
    for (const auto& r : rows) b.emplace(r.step, r.key, r.value);
    EXPECT_EQ(a, b);
    // Summary and console.
    auto summary = nlohmann::json::parse(files.at("wandb-summary.json").at(0));
    for (const auto& [k, v] : store.Summary(run.id)) {
      if (std::isfinite(v)) {
        EXPECT_DOUBLE_EQ(summary.at(k).get<double>(), v) << k;
      }
    }
    const auto logs = store.Logs(run.id);
    ASSERT_TRUE(files.count("output.log"));
    ASSERT_EQ(files.at("output.log").size(), logs.size());
    for (size_t i = 0; i < logs.size(); ++i) {
      EXPECT_NE(files.at("output.log")[i].find(logs[i].line), std::string::npos);
    }
    ASSERT_FALSE(all.at(path).completes.empty());
    EXPECT_EQ(all.at(path).completes.back(), exit_code);
  }
  EXPECT_EQ(server.stats().line_rewrites_different, 0);
}

TEST(WandbSettingsTest, EnvironmentNetrcAndOverrides) {
  testing::TempDir dir;
  testing::WriteFile(dir / "netrc", "machine other.host login user password nope\n"
                                    "machine 127.0.0.1:9999\n  login user\n  password netrc-key\n");
  setenv("NETRC", (dir / "netrc").c_str(), 1);
  EXPECT_EQ(NetrcPassword("http://127.0.0.1:9999"), "netrc-key");
  EXPECT_EQ(NetrcPassword("http://127.0.0.1:8888"), "");
  unsetenv("WANDB_API_KEY");
  setenv("WANDB_BASE_URL", "http://127.0.0.1:9999/", 1);
  setenv("WANDB_TAGS", "nightly, cpu ,,x", 1);
  setenv("WANDB_MODE", "dryrun", 1);
  WandbSettings s = WandbSettings::Resolve({{"wandb.project", "p"}, {"wandb.timeout", "3"}});
  EXPECT_EQ(s.base_url, "http://127.0.0.1:9999");
  EXPECT_EQ(s.api_key, "netrc-key");
  EXPECT_EQ(s.key_source, "~/.netrc");
  EXPECT_EQ(s.mode, "offline");
  EXPECT_FALSE(s.Online());
  EXPECT_EQ(s.tags, (std::vector<std::string>{"nightly", "cpu", "x"}));
  EXPECT_EQ(s.project, "p");
  EXPECT_EQ(s.timeout, 3);
  setenv("WANDB_MODE", "sometimes", 1);
  try {
    WandbSettings::Resolve();
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()), "WANDB_MODE=sometimes: expected online, offline or disabled");
  }
  unsetenv("WANDB_MODE");
  EXPECT_THROW(WandbSettings::Resolve({{"wandb.timeout", "-1"}}), BadInput);
  EXPECT_THROW(WandbSettings::Resolve({{"wandb.color", "red"}}), BadInput);
  // Review 19.4: inf passed the > 0 check (and max_lines=inf reached a cast to int64_t).
  for (const char* key : {"wandb.timeout", "wandb.interval", "wandb.max_lines"}) {
    for (const char* value : {"inf", "1e999", "nan"}) {
      try {
        WandbSettings::Resolve({{key, value}});
        ADD_FAILURE() << key << "=" << value;
      } catch (const BadInput& e) {
        EXPECT_EQ(std::string(e.what()), std::string(key) + "=" + value + ": expected a positive, finite number");
      }
    }
  }
  EXPECT_THROW(WandbSettings::Resolve({{"wandb.max_lines", "1e12"}}), BadInput);
  unsetenv("NETRC");
  unsetenv("WANDB_BASE_URL");
  unsetenv("WANDB_TAGS");
}

// A finished run arrives whole: the mutation with the config, every history row once and in
// order, the summary, the console, complete with exit code 0.
TEST(WandbMirrorTest, FinishedRunArrivesWhole) {
  testing::TempDir dir;
  FakeWandb server(kKey);
  auto r = RunCommand(Env(server.url()) + Experiment(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
  auto upserts = server.upserts();
  ASSERT_GE(upserts.size(), 1u);
  const auto& v = upserts[0];
  RunStore store(dir / "runs.db");
  const auto run = store.ListRuns().at(0);
  EXPECT_EQ(v["name"], run.id);
  EXPECT_EQ(v["project"], "tb-test");
  EXPECT_EQ(v["entity"], "lab");
  EXPECT_EQ(v["jobType"], "finetune");
  EXPECT_EQ(v["program"], "transferbench");
  auto config = nlohmann::json::parse(v["config"].get<std::string>());
  EXPECT_EQ(config["steps"]["value"], 200);
  EXPECT_TRUE(config["steps"].contains("desc"));
  EXPECT_EQ(config["dataset"]["value"], "mnist");
  // The outbox agrees: everything acknowledged.
  Outbox outbox = MirrorOutbox(store, server.url());
  EXPECT_TRUE(outbox.Get(run.id).final_sent);
  EXPECT_TRUE(outbox.PendingRuns().empty());
  EXPECT_EQ(outbox.Get(run.id).remote_id, "lab/tb-test/" + run.id);
}

// Faults on 30% of requests: 500, 429 + Retry-After, slow past the timeout, dropped
// connections before and after the server applied the request. Everything still arrives,
// exactly once.
TEST(WandbMirrorTest, ThirtyPercentFaultsStillExactlyOnce) {
  testing::TempDir dir;
  FakeWandb server(kKey, /*fault_rate=*/0.3, /*slow_seconds=*/0.8, /*seed=*/20261124);
  auto r = RunCommand(Env(server.url()) + Experiment(dir.path(), "--set steps=1000 --set wandb.finish_timeout=120"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
  auto stats = server.stats();
  int64_t faults = 0;
  for (const auto& [kind, n] : stats.faults) {
    if (kind != FakeWandb::kNone) faults += n;
  }
  RunStore store(dir / "runs.db");
  const auto id = store.ListRuns().at(0).id;
  std::cout << "[ fault injection ] requests " << stats.requests << ", faults " << faults << " (500: "
            << stats.faults[FakeWandb::kServerError] << ", 429: " << stats.faults[FakeWandb::kRateLimit]
            << ", slow: " << stats.faults[FakeWandb::kSlow] << ", dropped before: " << stats.faults[FakeWandb::kDropBeforeApply]
            << ", dropped after: " << stats.faults[FakeWandb::kDropAfterApply] << "), history rows delivered "
            << store.Metrics(id).size() << ", lines resent and replaced " << stats.line_rewrites_same
            << ", duplicates " << stats.line_rewrites_different << "\n";
  EXPECT_GT(faults, 3);
  EXPECT_EQ(stats.line_rewrites_different, 0);
}

// With the server down for the whole run the experiment finishes on time with exit 0; a
// later `sync` delivers everything; a second sync sends nothing.
TEST(WandbMirrorTest, ServerDownThenSync) {
  testing::TempDir dir;
  const std::string down = "http://127.0.0.1:" + std::to_string(FreePort());
  const auto start = std::chrono::steady_clock::now();
  auto r = RunCommand(Env(down) + Experiment(dir.path(), "--set wandb.finish_timeout=2"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("transferbench sync"), std::string::npos) << r.out;
  RunStore store(dir / "runs.db");
  const double run_seconds = store.Summary(store.ListRuns().at(0).id).at("time/total_seconds");
  EXPECT_LT(seconds, run_seconds + 2 + 10) << "the run waited too long for a server that is down";
  EXPECT_EQ(MirrorOutbox(store, down).PendingRuns().size(), 1u);
  {  // the live sender kept its (unacknowledged) state under the destination it tried
    SQLite::Statement q(store.db(), "SELECT sink, final_sent FROM sync_state");
    ASSERT_TRUE(q.executeStep());
    EXPECT_EQ(q.getColumn(0).getString(), "wandb " + down + " lab/tb-test");
    EXPECT_EQ(q.getColumn(1).getInt(), 0);
    EXPECT_FALSE(q.executeStep());
  }

  FakeWandb server(kKey);
  auto sync = RunCommand(Env(server.url()) + kBin + "/transferbench --results " + dir.path() + " sync --all");
  ASSERT_EQ(sync.exit_code, 0) << sync.out;
  EXPECT_NE(sync.out.find("sync: 1 complete, 0 live, 0 left for later"), std::string::npos) << sync.out;
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
  const int64_t requests = server.stats().requests;
  auto again = RunCommand(Env(server.url()) + kBin + "/transferbench --results " + dir.path() + " sync --all");
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_EQ(server.stats().requests, requests);  // nothing sent twice

  // A second destination has seen nothing: it gets the whole run, and the first is not resent.
  FakeWandb other(kKey);
  auto to_other = RunCommand(Env(other.url()) + kBin + "/transferbench --results " + dir.path() + " sync --all");
  ASSERT_EQ(to_other.exit_code, 0) << to_other.out;
  EXPECT_NE(to_other.out.find("sync: 1 complete"), std::string::npos) << to_other.out;
  ExpectDeliveredExactly(other, dir / "runs.db", 0);
  EXPECT_EQ(server.stats().requests, requests);
  RunStore after(dir / "runs.db");
  EXPECT_TRUE(MirrorOutbox(after, server.url()).PendingRuns().empty());
  EXPECT_TRUE(MirrorOutbox(after, other.url()).PendingRuns().empty());
}

// Runs logged with W&B disabled or offline are sent by a later sync, exactly once, even when
// two syncs run at once.
TEST(WandbMirrorTest, OfflineRunsSyncOnceWithConcurrentSyncs) {
  testing::TempDir dir;
  FakeWandb server(kKey, /*fault_rate=*/0.2, /*slow_seconds=*/0.0, /*seed=*/7);
  for (const char* mode : {"disabled", "offline"}) {
    auto r = RunCommand("WANDB_MODE=" + std::string(mode) + " " + Env(server.url()).substr(std::string("env -u WANDB_MODE ").size()) +
                        Experiment(dir.path(), std::string("--set seed=") + (mode[0] == 'd' ? "1" : "2")));
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  EXPECT_EQ(server.stats().requests, 0);
  const std::string sync = Env(server.url()) + kBin + "/transferbench --results " + dir.path() +
                           " sync --all --set wandb.backoff_initial=0.05 --set wandb.max_lines=20";
  auto a = std::async(std::launch::async, [&] { return RunCommand(sync); });
  auto b = std::async(std::launch::async, [&] { return RunCommand(sync); });
  auto ra = a.get(), rb = b.get();
  // One of them may find a run leased by the other and leave it: a third sync completes it.
  auto rc = RunCommand(sync);
  EXPECT_EQ(rc.exit_code, 0) << ra.out << rb.out << rc.out;
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
}

// Sync while the run is live: both senders share the outbox and the lease.
TEST(WandbMirrorTest, SyncConcurrentWithALiveRun) {
  testing::TempDir dir;
  FakeWandb server(kKey, /*fault_rate=*/0.1, /*slow_seconds=*/0.0, /*seed=*/3);
  auto live = std::async(std::launch::async, [&] {
    return RunCommand(Env(server.url()) + Experiment(dir.path(), "--set steps=600 --set wandb.finish_timeout=30"));
  });
  const std::string sync = Env(server.url()) + kBin + "/transferbench --results " + dir.path() +
                           " sync --all --set wandb.backoff_initial=0.05 --set wandb.max_lines=20";
  int syncs = 0;
  while (live.wait_for(std::chrono::milliseconds(300)) != std::future_status::ready) {
    if (std::filesystem::exists(dir / "runs.db")) {
      RunCommand(sync);
      ++syncs;
    }
  }
  auto r = live.get();
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_GT(syncs, 0);
  RunCommand(sync);
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
}

// 401: one message, no retries after it, and the run's own status in SQLite is untouched.
TEST(WandbMirrorTest, UnauthorizedStopsWithOneMessage) {
  testing::TempDir dir;
  FakeWandb server("the-right-key");
  auto r = RunCommand(Env(server.url()) + Experiment(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  int wandb_lines = 0;
  std::stringstream ss(r.out);
  for (std::string line; std::getline(ss, line);) {
    if (line.rfind("wandb:", 0) == 0) {
      ++wandb_lines;
      EXPECT_NE(line.find("HTTP 401"), std::string::npos) << line;
      EXPECT_NE(line.find("WANDB_API_KEY"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(wandb_lines, 1) << r.out;
  EXPECT_EQ(server.stats().requests, 1);  // stopped at the first refusal
  RunStore store(dir / "runs.db");
  const auto run = store.ListRuns().at(0);
  EXPECT_EQ(run.status, RunStatus::kFinished);
  EXPECT_NE(MirrorOutbox(store, server.url()).Get(run.id).last_error.find("401"), std::string::npos);
  auto sync = RunCommand(Env(server.url()) + kBin + "/transferbench --results " + dir.path() + " sync --all");
  EXPECT_EQ(sync.exit_code, 1);
  EXPECT_NE(sync.out.find("error: wandb: HTTP 401"), std::string::npos) << sync.out;
}

// The key appears nowhere but the Authorization header: not in any request path, header or
// body, not in the output, not in the store.
TEST(WandbMirrorTest, KeyNeverInClear) {
  testing::TempDir dir;
  FakeWandb server(kKey, /*fault_rate=*/0.2, /*slow_seconds=*/0.0, /*seed=*/11);
  auto r = RunCommand(Env(server.url()) + Experiment(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto bad = RunCommand(Env(server.url(), "short-wrong-key") + kBin + "/transferbench --results " + dir.path() + " sync --all");
  EXPECT_EQ(bad.out.find("short-wrong-key"), std::string::npos) << bad.out;
  EXPECT_EQ(r.out.find(kKey), std::string::npos);
  for (const auto& t : server.transcripts()) EXPECT_EQ(t.find(kKey), std::string::npos) << t;
  EXPECT_GT(server.transcripts().size(), 3u);
  {
    SQLite::Database db(dir / "runs.db", SQLite::OPEN_READWRITE);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    if (e.is_regular_file()) {
      EXPECT_EQ(testing::ReadFile(e.path()).find(kKey), std::string::npos) << e.path();
    }
  }
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// The quick nightly suite with a key set mirrors every one of its runs.
TEST(WandbMirrorTest, NightlySuiteMirrorsEveryRun) {
  testing::TempDir dir;
  FakeWandb server(kKey);
  auto r = RunCommand(Env(server.url()) + kBin + "/transferbench --results " + dir.path() +
                      " nightly --quick --set wandb.interval=0.5");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
  EXPECT_EQ(server.runs().size(), 30u);  // 16 surgery, 9 merge, 3 continual, 2 bootstrap runs
  RunStore store(dir / "runs.db");
  EXPECT_TRUE(MirrorOutbox(store, server.url()).PendingRuns().empty());
  // One night groups together on the dashboard: suite at commit, and both as tags.
  const auto runs = store.ListRuns();
  ASSERT_FALSE(runs.empty());
  const std::string commit = runs.front().git_commit;
  const std::string group =
      commit.empty() ? "nightly-quick" : "nightly-quick@" + commit.substr(0, 7) + (runs.front().git_dirty ? "-dirty" : "");
  for (const auto& v : server.upserts()) {
    EXPECT_EQ(v["groupName"], group);
    const auto tags = v["tags"].get<std::vector<std::string>>();
    EXPECT_NE(std::find(tags.begin(), tags.end(), "suite:nightly-quick"), tags.end()) << v.dump();
    if (!commit.empty()) EXPECT_NE(std::find(tags.begin(), tags.end(), "commit:" + commit.substr(0, 7)), tags.end());
  }
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// Settings for a WandbSync in this process that sends to `server` (the destination of Env()).
WandbSettings DirectSettings(const FakeWandb& server) {
  WandbSettings s;
  s.base_url = server.url();
  s.api_key = kKey;
  s.entity = "lab";
  s.project = "tb-test";
  s.backoff_initial = 0.05;
  s.backoff_max = 0.2;
  return s;
}

// A run of another host whose heartbeat looks stale (that host's clock behind, or its process
// suspended) is sent as crashed (exit 1). It was alive: once its heartbeat is back, what it logs
// afterwards is mirrored (the W&B run resumed, nothing resent) and its true final state follows.
TEST(WandbMirrorTest, StaleLookingRunResumesMirroringWhenAlive) {
  testing::TempDir dir;
  FakeWandb server(kKey);
  RunStore store(dir / "runs.db");
  NewRun spec;
  spec.suite = "unit";
  spec.method = "finetune";
  const std::string id = store.CreateRun(spec);
  store.db().exec("UPDATE runs SET host = 'other-host', pid = 1");
  double t = NowSeconds();
  store.AppendMetrics(id, {{/*step=*/0, "train/loss", 0.9, t}, {0, "train/acc", 0.1, t}, {1, "train/loss", 0.8, t}});
  store.AppendLogs(id, {{0, "epoch 0", t}});
  store.SetSummary(id, {{"train/loss", 0.8}});
  store.db().exec("UPDATE runs SET heartbeat_at = heartbeat_at - 1000");
  ASSERT_EQ(store.GetRun(id)->status, RunStatus::kCrashed);

  WandbSync sync(store, DirectSettings(server), "test-sync");
  Outbox outbox = MirrorOutbox(store, server.url());
  SyncReport r = sync.SyncRun(id, NowSeconds() + 20);
  EXPECT_TRUE(r.final_sent);
  const std::string path = "lab/tb-test/" + id;
  EXPECT_EQ(server.runs().at(path).completes, (std::vector<int>{1}));
  EXPECT_TRUE(outbox.PendingRuns().empty());  // nothing changed since: nothing to send
  const int64_t requests = server.stats().requests;
  EXPECT_TRUE(sync.SyncRun(id, NowSeconds() + 20).done);
  EXPECT_EQ(server.stats().requests, requests);

  // The run was alive: its heartbeat is back and it logs on.
  t = NowSeconds();
  store.AppendMetrics(id, {{2, "train/loss", 0.7, t}, {3, "train/loss", 0.6, t}});
  store.AppendLogs(id, {{0, "epoch 1", t}});
  ASSERT_EQ(store.GetRun(id)->status, RunStatus::kRunning);
  EXPECT_EQ(outbox.PendingRuns(), (std::vector<std::string>{id}));
  r = sync.SyncRun(id, NowSeconds() + 20);
  EXPECT_FALSE(r.final_sent);
  EXPECT_FALSE(r.done);
  EXPECT_EQ(r.console_lines, 1);
  EXPECT_EQ(server.runs().at(path).state, "running");
  EXPECT_EQ(server.runs().at(path).resumes, 1);
  EXPECT_EQ(outbox.PendingRuns(), (std::vector<std::string>{id}));

  // It finishes: `sync --all` sends the rest (the line left open above, and one more) and the
  // true final state, which replaces the crash.
  store.AppendMetrics(id, {{4, "train/loss", 0.5, NowSeconds()}});
  store.SetSummary(id, {{"train/loss", 0.5}});
  store.FinishRun(id, RunStatus::kFinished, /*exit_code=*/0, "");
  auto cli = RunCommand(Env(server.url()) + kBin + "/transferbench --results " + dir.path() + " sync --all");
  ASSERT_EQ(cli.exit_code, 0) << cli.out;
  EXPECT_NE(cli.out.find("2 history lines, 0 console lines, summary, final state (finished); complete"),
            std::string::npos) << cli.out;
  EXPECT_EQ(server.runs().at(path).completes, (std::vector<int>{1, 0}));
  EXPECT_EQ(server.runs().at(path).state, "finished");
  EXPECT_EQ(server.stats().data_while_complete, 0);
  EXPECT_EQ(server.upserts().size(), 2u);  // created, then resumed once
  EXPECT_TRUE(outbox.PendingRuns().empty());
  ExpectDeliveredExactly(server, dir / "runs.db", 0);
}

// The run's own process knows it is alive, however stale its heartbeat looks (the process was
// suspended): its live sender never marks it crashed.
TEST(WandbMirrorTest, OwnRunIsNotSentAsCrashed) {
  testing::TempDir dir;
  FakeWandb server(kKey);
  RunStore store(dir / "runs.db");
  NewRun spec;
  spec.method = "finetune";
  const std::string id = store.CreateRun(spec);  // this process, this host
  store.AppendMetrics(id, {{0, "train/loss", 0.9, NowSeconds()}, {1, "train/loss", 0.8, NowSeconds()}});
  store.db().exec("UPDATE runs SET heartbeat_at = heartbeat_at - 1000");
  ASSERT_EQ(store.GetRun(id)->status, RunStatus::kCrashed);
  WandbSync sync(store, DirectSettings(server), "test-live");
  SyncReport r = sync.SyncRun(id, NowSeconds() + 20);
  EXPECT_EQ(r.history_lines, 1);  // the open tail stays open
  EXPECT_FALSE(r.final_sent);
  EXPECT_TRUE(server.runs().at("lab/tb-test/" + id).completes.empty());
}

}  // namespace
}  // namespace tb
