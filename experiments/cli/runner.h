// The runner: one run of one method on one scenario with one seed and one config. It
// resolves the options, trains or loads A and B from the zoo, applies the source control,
// calls the method, evaluates A and A', and logs everything through the fan-out (SQLite, the
// console, and whatever sinks are configured).
//
//   tb::RunRequest req{"direct_copy", {{"arch", "wide"}, {"seed", 1}}};
//   tb::PreparedRun prepared = tb::PrepareRun(req);       // BadInput on any bad option
//   tb::RunOutcome out = tb::ExecuteRun(prepared, paths);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/methods/method.h"
#include "experiments/train/trainer.h"
#include "reporting/report.h"
#include "store/run_store.h"

namespace tb {

// Bump when a change to the runner, a method or a metric changes what runs measure: it is part
// of every config hash, so suites re-run configs measured by older code.
constexpr int kRunnerVersion = 1;

// Run-level options: everything but the method's own. `arch=X` sets arch_a and arch_b;
// `pair=B:A` sets arch_b (the source) and arch_a (the target).
struct RunConfig {
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  int64_t train_per_class = 0;
  std::vector<int64_t> classes_a{0, 1, 2, 3};
  std::vector<int64_t> classes_b{2, 3, 4, 5};
  std::vector<int64_t> transfer{4};
  std::string arch_a = "wide";
  std::string arch_b = "wide";
  std::string activation = "relu";
  std::string init = "default";
  int64_t seed = 0;
  std::string source = "trained";
  std::string calibrate = "none";
  double calibrate_threshold = 0.97;
  double calibrate_max_shift = 50;
  TrainOptions train;
  int64_t threads = 0;
  std::string device = "auto";

  void Bind(Options& o);
  // "A0123-B2345-T4"
  std::string ScenarioName() const;
};

struct RunRequest {
  std::string method;
  // Settings applied in order: option name -> value (JSON, or text as from --set).
  std::vector<std::pair<std::string, nlohmann::json>> settings;
  std::string suite;
  std::vector<std::string> tags;
};

struct PreparedRun {
  std::map<std::string, std::string> wandb;  // wandb.* settings: the mirror, not the config
  RunRequest request;
  RunConfig config;
  std::unique_ptr<Method> method;
  nlohmann::json config_json;  // every option's value, resolved, plus method and dataset hash
  std::string config_hash;
  std::string label;           // one line for progress output
};

struct ResultPaths {
  std::string results_dir;
  std::string store_path() const { return results_dir + "/runs.db"; }
  std::string zoo_dir() const { return results_dir + "/zoo"; }
  std::string reports_dir() const { return results_dir + "/reports"; }
};

struct RunOutcome {
  std::string run_id;
  RunStatus status = RunStatus::kFailed;
  int exit_code = 1;
  std::string error;
  std::map<std::string, double> summary;
  bool skipped = false;  // an identical config had already finished
  double seconds = 0;
};

// Resolves and validates every option (loads the dataset to hash it). Nothing is stored.
PreparedRun PrepareRun(const RunRequest& request);

// Every option's declared value: the run-level options and each registered method's own, for
// the report (which row is the method as declared).
DeclaredOptions DeclaredDefaults();

// The full option set of a method plus the run-level options, for --help.
std::string RunHelp(const std::string& method);

struct ExecuteOptions {
  bool skip_finished = false;  // suites: do not re-run a config hash that already finished
  bool verbose = false;        // echo progress text and scalars on stderr
};

// Runs and logs; never throws for a failure inside the run (the outcome says failed, with
// exit code 2 for bad input and 1 otherwise). Throws only if the store cannot be written.
RunOutcome ExecuteRun(PreparedRun& run, const ResultPaths& paths, const ExecuteOptions& options);

}  // namespace tb
