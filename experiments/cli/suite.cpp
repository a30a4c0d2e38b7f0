#include "experiments/cli/suite.h"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "experiments/cli/console.h"
#include "experiments/cli/environment.h"
#include "experiments/cli/guarded.h"
#include "experiments/cli/zoo_command.h"
#include "experiments/train/zoo_grid.h"
#include "reporting/report.h"
#include "reporting/surgery.h"
#include "store/errors.h"


namespace tb {
namespace {

using Ordered = nlohmann::ordered_json;

void Expand(const std::vector<std::pair<std::string, Ordered>>& axes, size_t i,
            std::vector<std::pair<std::string, nlohmann::json>>& current, const std::string& method,
            const std::string& suite, std::vector<RunRequest>& out) {
  if (i == axes.size()) {
    RunRequest r;
    r.method = method;
    r.suite = suite;
    r.settings = current;
    r.tags = {suite};
    out.push_back(std::move(r));
    return;
  }
  const auto& [key, values] = axes[i];
  for (const auto& v : values) {
    if (key == "method") {
      Expand(axes, i + 1, current, v.get<std::string>(), suite, out);
    } else {
      current.emplace_back(key, nlohmann::json::parse(v.dump()));
      Expand(axes, i + 1, current, method, suite, out);
      current.pop_back();
    }
  }
}

}  // namespace

std::string SuitesDir() { return (std::filesystem::path(TB_SOURCE_DIR) / "experiments" / "suites").string(); }

Suite LoadSuite(const std::string& path, const std::string& name_override) {
  std::ifstream in(path);
  if (!in) throw BadInput(fmt::format("{}: cannot open suite file", path));
  Ordered doc;
  try {
    doc = Ordered::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
  if (!doc.is_object() || !doc.contains("name") || !doc["name"].is_string() || !doc.contains("matrix") ||
      !doc["matrix"].is_array()) {
    throw BadInput(fmt::format("{}: expected an object with \"name\" (string) and \"matrix\" (array)", path));
  }
  for (const auto& [key, value] : doc.items()) {
    if (key != "name" && key != "description" && key != "set" && key != "matrix") {
      throw BadInput(fmt::format("{}: unknown key \"{}\" (accepted: name, description, set, matrix)", path, key));
    }
  }
  Suite s;
  s.path = path;
  s.name = name_override.empty() ? doc["name"].get<std::string>() : name_override;
  try {
    CheckSuiteName(s.name);
  } catch (const BadInput& e) {
    throw BadInput(fmt::format("{}: {}", path, e.what()));
  }
  std::vector<std::pair<std::string, nlohmann::json>> common;
  if (doc.contains("set")) {
    if (!doc["set"].is_object()) throw BadInput(fmt::format("{}: \"set\" must be an object", path));
    for (const auto& [k, v] : doc["set"].items()) common.emplace_back(k, nlohmann::json::parse(v.dump()));
  }
  for (const auto& entry : doc["matrix"]) {
    if (!entry.is_object() || !entry.contains("method")) {
      throw BadInput(fmt::format("{}: each matrix entry must be an object with a \"method\"", path));
    }
    std::vector<std::pair<std::string, Ordered>> axes;
    // An entry's own "set" replaces the suite's (an entry of another protocol, whose scenario
    // options differ, says its own).
    auto current = common;
    if (entry.contains("set")) {
      if (!entry["set"].is_object()) throw BadInput(fmt::format("{}: a matrix entry's \"set\" must be an object", path));
      current.clear();
      for (const auto& [k, v] : entry["set"].items()) current.emplace_back(k, nlohmann::json::parse(v.dump()));
    }
    for (const auto& [k, v] : entry.items()) {
      if (k == "set") continue;
      Ordered values = v.is_array() ? v : Ordered::array({v});
      if (values.empty()) throw BadInput(fmt::format("{}: matrix key \"{}\" has no values", path, k));
      if (k == "method") {
        for (const auto& m : values) {
          if (!m.is_string()) throw BadInput(fmt::format("{}: method {}: expected a name", path, m.dump()));
        }
      }
      axes.emplace_back(k, values);
    }
    Expand(axes, 0, current, "", s.name, s.runs);
  }
  return s;
}

Settings SuiteRunSettings(const Settings& run, const Settings& extra, int64_t jobs) {
  Settings out = run;
  out.insert(out.end(), extra.begin(), extra.end());
  // N jobs share the cores: cores / N intra-op threads each, unless the run or the command sets
  // threads. (The thread count is part of every config hash: the workers, a dry run and the
  // parent must all prepare the same configs.)
  const bool has_threads = std::any_of(out.begin(), out.end(), [](const auto& s) { return s.first == "threads"; });
  if (jobs > 1 && !has_threads) {
    const int64_t cores = UsableCores();
    out.emplace_back("threads", std::to_string(std::max<int64_t>(1, cores / jobs)));
  }
  return out;
}

namespace {

// Starts `jobs` workers (this binary: `suite FILE --worker K/N` with the same settings) and
// waits for them; returns how many failed to finish cleanly.
int RunWorkers(const Suite& suite, const ResultPaths& paths, const Settings& settings, int64_t jobs) {
  std::vector<pid_t> workers;
  for (int64_t w = 0; w < jobs; ++w) {
    std::vector<std::string> args = {"transferbench", "--results", paths.results_dir, "suite", suite.path,
                                     "--worker", fmt::format("{}/{}", w, jobs), "--jobs", std::to_string(jobs)};
    for (const auto& [key, value] : settings) {
      args.push_back("--set");
      args.push_back(key + "=" + (value.is_string() ? value.get<std::string>() : value.dump()));
    }
    workers.push_back(SpawnSelf(args, "suite worker"));
  }
  int failed = 0;
  for (pid_t pid : workers) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  return failed;
}

}  // namespace

SuiteResult RunSuite(const Suite& suite, const ResultPaths& paths,
                     const std::vector<std::pair<std::string, nlohmann::json>>& extra_settings,
                     const SuiteOptions& suite_options) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool worker = suite_options.worker >= 0;
  if (suite_options.jobs < 1 || suite_options.jobs > 256) {
    throw BadInput(fmt::format("--jobs {}: expected 1..256", suite_options.jobs));
  }
  const Settings& settings = extra_settings;
  std::vector<PreparedRun> prepared;
  for (RunRequest r : suite.runs) {
    r.settings = SuiteRunSettings(r.settings, settings, suite_options.jobs);
    try {
      prepared.push_back(PrepareRun(r));
    } catch (const BadInput& e) {
      throw BadInput(fmt::format("{}: run {} ({}): {}", suite.path, prepared.size() + 1, r.method, e.what()));
    }
  }
  // The zoo grids the runs take their models from (zoo.grid): built first, where not yet built.
  std::map<std::string, std::string> grids;  // grid → the device of the first run that names it
  for (const auto& run : prepared) {
    const auto it = run.config_json.find("zoo.grid");
    if (it != run.config_json.end() && it->is_string() && !it->get<std::string>().empty()) {
      grids.emplace(it->get<std::string>(), run.config.device);
    }
  }
  if (!grids.empty()) std::filesystem::create_directories(paths.results_dir);  // a first run: nothing there yet
  for (const auto& [name, device] : worker ? std::map<std::string, std::string>{} : grids) {  // the parent built them
    const ZooGrid grid = LoadZooGrid(name);
    RunStore store(paths.store_path());
    if (ZooUnitsDone(store, grid) >= grid.Units()) continue;
    std::cout << fmt::format("suite {}: building zoo grid {} first ({} units)\n", suite.name, grid.name, grid.Units()) << std::flush;
    const int code = BuildZooGrid(grid, paths.results_dir, 2, 0, device);
    if (code == 2) throw BadInput(fmt::format("zoo grid {}: a worker refused its input (see above)", grid.name));
    if (code != 0) throw std::runtime_error(fmt::format("zoo grid {}: a worker failed (see above)", grid.name));
  }
  SuiteResult result;
  if (suite_options.jobs > 1 && !worker) {
    // The parent: its workers run the configs; it counts what they finished and writes the report.
    std::filesystem::create_directories(paths.results_dir);
    std::set<std::string> before;
    {
      RunStore store(paths.store_path());
      for (const auto& run : prepared) {
        if (store.FinishedRunWithHash(run.config_hash)) before.insert(run.config_hash);
      }
    }
    std::cout << fmt::format("suite {}: {} runs in {} worker processes\n", suite.name, prepared.size(), suite_options.jobs)
              << std::flush;
    const int failed_workers = RunWorkers(suite, paths, settings, suite_options.jobs);
    RunStore store(paths.store_path());
    std::set<std::string> counted;
    for (const auto& run : prepared) {
      if (!counted.insert(run.config_hash).second) continue;
      if (before.count(run.config_hash)) {
        ++result.skipped;
      } else {
        ++result.ran;
        if (!store.FinishedRunWithHash(run.config_hash)) ++result.failed;
      }
    }
    result.skipped += static_cast<int64_t>(prepared.size() - counted.size());  // repeats of a config: done once
    if (failed_workers > 0 && result.failed == 0) {
      throw std::runtime_error(fmt::format("suite {}: {} worker process(es) failed (see above)", suite.name, failed_workers));
    }
    result.report_paths = WriteSuiteReport(store, suite.name, paths.reports_dir(), suite.name, DeclaredDefaults());
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }
  if (worker) {
    // This worker's shard: every workers-th distinct config (a config the suite lists twice goes
    // to one worker, which finds it done the second time).
    std::map<std::string, int64_t> order;
    std::vector<PreparedRun> mine;
    for (auto& run : prepared) {
      const int64_t index = order.try_emplace(run.config_hash, static_cast<int64_t>(order.size())).first->second;
      if (index % suite_options.workers == suite_options.worker) mine.push_back(std::move(run));
    }
    prepared = std::move(mine);
  }
  // What the suite finds already done (by any suite, or a lone run) counts as its own in its
  // report and in `ls --suite`, from the start: an interrupted suite's report stands on it.
  if (std::filesystem::exists(paths.store_path())) {
    RunStore store(paths.store_path());
    std::vector<std::string> found;
    for (const auto& run : prepared) {
      if (auto id = store.FinishedRunWithHash(run.config_hash)) found.push_back(*id);
    }
    store.TagSuiteMembers(found, suite.name);
  }
  Progress progress(static_cast<int64_t>(prepared.size()));
  ExecuteOptions options;
  options.skip_finished = true;
  options.verbose = suite_options.verbose;
  for (auto& run : prepared) {
    progress.Start(run.label);
    RunOutcome out = ExecuteRun(run, paths, options);
    std::string line;
    if (out.status == RunStatus::kFinished) {
      line = fmt::format("{}{}  {}", out.skipped ? "(done before) " : "", Headline(out.summary),
                         out.skipped ? "" : FormatDuration(out.seconds));
    } else {
      line = "FAILED: " + out.error;
    }
    progress.Done(run.label, line, !out.skipped);
    if (out.skipped) {
      ++result.skipped;
    } else {
      ++result.ran;
      if (out.status != RunStatus::kFinished) ++result.failed;
    }
  }
  progress.Finish();
  if (worker) {
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return result;
  }
  RunStore store(paths.store_path());
  result.report_paths = WriteSuiteReport(store, suite.name, paths.reports_dir(), suite.name, DeclaredDefaults());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace tb
