// Suites: JSON files listing methods x scenarios x seeds x options. Each matrix entry maps
// option names (and "method") to a value or a list of values; the runs are the cartesian
// product, in the order the keys are written. "set" holds settings common to every run; an
// entry's own "set" replaces it for that entry's runs (an entry of another protocol, whose
// scenario options differ, gives its own).
//
//   {"name": "nightly",
//    "set": {"train.epochs": 5},
//    "matrix": [{"dataset": ["mnist", "fashion-mnist"], "arch": ["wide", "deep"],
//                "seed": [0, 1, 2], "method": ["direct_copy", "finetune"],
//                "source": ["trained", "shuffled"]}]}
//
//   tb::Suite s = tb::LoadSuite("experiments/suites/nightly.json");
//   tb::SuiteResult r = tb::RunSuite(s, paths, extra_settings, options);
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/cli/runner.h"

namespace tb {

struct Suite {
  std::string name;
  std::string path;
  std::vector<RunRequest> runs;
};

// Parses and expands a suite file; BadInput names the file and the problem.
Suite LoadSuite(const std::string& path, const std::string& name_override = "");

// The directory of the built-in suite files.
std::string SuitesDir();

struct SuiteResult {
  int64_t ran = 0, skipped = 0, failed = 0;
  double seconds = 0;
  std::vector<std::string> report_paths;
};

struct SuiteOptions {
  bool verbose = false;
  // Worker processes on this machine (`--jobs N`): each runs every N-th config (static shards,
  // so two jobs never run one config), sharing the store (concurrent writers are safe) and the
  // zoo cache. Where no threads= setting is given, each gets cores / N intra-op threads.
  int64_t jobs = 1;
  // Internal (`--worker K/N`): this process is worker K of N; it runs its shard and writes no
  // report. -1: not a worker.
  int64_t worker = -1, workers = 0;
};

using Settings = std::vector<std::pair<std::string, nlohmann::json>>;

// A suite run's settings: its own, then the command's, then, under `jobs` > 1, threads = cores /
// jobs where neither sets threads.
Settings SuiteRunSettings(const Settings& run, const Settings& extra, int64_t jobs);

// Prepares every run first (so a bad entry stops the suite before anything runs), then runs
// those whose config hash has not finished yet, and writes the suite's report.
SuiteResult RunSuite(const Suite& suite, const ResultPaths& paths,
                     const std::vector<std::pair<std::string, nlohmann::json>>& extra_settings,
                     const SuiteOptions& options);

}  // namespace tb
