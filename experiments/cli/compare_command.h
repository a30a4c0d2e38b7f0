// `transferbench compare BASE NEW`: the regression gate between two nights (reporting/compare.h).
// Each side is a suite in the results' store, a git commit's runs there, or another store file
// (FILE.db[:SUITE]). Prints the Markdown summary, writes <reports>/<name>.{md,csv,json}, and
// exits 0 when nothing regressed, 3 when something did, 2 on bad input — for a cron job or CI.
#pragma once

#include <map>
#include <string>

#include <CLI/CLI.hpp>

namespace tb {

struct CompareRequest {
  std::string base, next;
  std::string suite;                     // restricts store-file and commit sides ("" = all)
  std::map<std::string, double> thresholds;  // metric key or rule pattern → threshold
  double alpha = 0.05;
  std::string name = "compare";          // the written files' name under reports/
};

// Runs the comparison against the store of `results`; returns the exit code (0, 3; BadInput
// propagates, for the caller's exit code 2).
int RunCompare(const CompareRequest& request, const std::string& results);

// "key=value" → thresholds[key] = value; BadInput naming the text otherwise.
void ParseThreshold(const std::string& text, std::map<std::string, double>& thresholds);

// Adds the `compare` subcommand to `app`; its callback reads `results` and sets `code`.
void AddCompareCommand(CLI::App& app, const std::string& results, int& code);

}  // namespace tb
