#include "experiments/cli/suite.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "experiments/cli/console.h"
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

SuiteResult RunSuite(const Suite& suite, const ResultPaths& paths,
                     const std::vector<std::pair<std::string, nlohmann::json>>& extra_settings, bool verbose) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<PreparedRun> prepared;
  for (RunRequest r : suite.runs) {
    r.settings.insert(r.settings.end(), extra_settings.begin(), extra_settings.end());
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
  for (const auto& [name, device] : grids) {
    const ZooGrid grid = LoadZooGrid(name);
    RunStore store(paths.store_path());
    if (ZooUnitsDone(store, grid) >= grid.Units()) continue;
    std::cout << fmt::format("suite {}: building zoo grid {} first ({} units)\n", suite.name, grid.name, grid.Units()) << std::flush;
    const int code = BuildZooGrid(grid, paths.results_dir, 2, 0, device);
    if (code == 2) throw BadInput(fmt::format("zoo grid {}: a worker refused its input (see above)", grid.name));
    if (code != 0) throw std::runtime_error(fmt::format("zoo grid {}: a worker failed (see above)", grid.name));
  }
  SuiteResult result;
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
  options.verbose = verbose;
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
  RunStore store(paths.store_path());
  result.report_paths = WriteSuiteReport(store, suite.name, paths.reports_dir(), suite.name, DeclaredDefaults());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace tb
