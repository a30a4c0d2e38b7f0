// The runner: one run of one method on one scenario with one seed and one config. It resolves
// the options (the run-level ones, the method's protocol's scenario, the method's own), hands
// the run to the protocol (which trains or loads its zoo models, applies the source control,
// calls the method and evaluates), and logs everything through the fan-out (SQLite, the
// console, and whatever sinks are configured). It knows protocols only through ProtocolRun.
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
#include "experiments/protocols/protocol.h"
#include "experiments/train/trainer.h"
#include "reporting/report.h"
#include "store/run_store.h"

namespace tb {

// Bump when a change to the runner, a method or a metric changes what runs measure: it is part
// of every config hash, so suites re-run configs measured by older code.
constexpr int kRunnerVersion = 1;

// The run-level options every protocol shares; a protocol adds its scenario options (the
// surgery protocol: dataset, classes_a, arch_a, train.*, ...) and a method its own.
struct CommonOptions {
  int64_t seed = 0;
  std::string source = "trained";
  int64_t threads = 0;
  std::string device = "auto";

  void Bind(Options& o);
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
  CommonOptions config;
  std::unique_ptr<Method> method;
  std::unique_ptr<ProtocolRun> protocol;  // the method's protocol, holding the scenario options
  nlohmann::json config_json;  // every option's value, resolved, plus method and dataset hash
  std::string config_hash;
  std::string label;           // one line for progress output
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

// Every option a run of `method` accepts: the run-level ones, its protocol's, its own.
std::vector<std::string> OptionNames(const std::string& method);

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
