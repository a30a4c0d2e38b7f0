// Console output: a logger that echoes a run's text (and, when verbose, its scalars) on
// stderr, and a progress display for suites: one self-updating line with an ETA on a
// terminal, plain lines otherwise. NO_COLOR is honoured.
//
//   tb::Progress progress(/*total=*/120);
//   progress.Done("finetune mnist wide→wide seed 0", "transfer 1.000 preservation 0.021");
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "store/logger.h"

namespace tb {

bool StderrIsTerminal();
bool UseColor();

class ConsoleLogger : public RunLogger {
 public:
  explicit ConsoleLogger(bool verbose) : verbose_(verbose) {}
  void Scalar(std::string_view key, double value, int64_t step) override;
  void Summary(const std::map<std::string, double>& values) override {}
  void Text(std::string_view line) override;
  void RunEnded(RunStatus status, int exit_code, const std::string& error) override;

 private:
  bool verbose_;
};

// A run's headline in one short string, by what its summary holds: transfer and preservation
// (surgery), IID accuracy as merged and after the last fine-tuning epoch (merge), average
// accuracy and forgetting (continual); "-" for a summary with none of them.
std::string Headline(const std::map<std::string, double>& summary);

class Progress {
 public:
  explicit Progress(int64_t total);
  // Announces the item about to run (a terminal shows it on the progress line).
  void Start(const std::string& label);
  // Marks one item done; `result` is a short summary shown after the label.
  void Done(const std::string& label, const std::string& result, bool counts_for_eta = true);
  void Finish();

 private:
  std::string Eta() const;
  int64_t total_;
  int64_t done_ = 0;
  int64_t timed_ = 0;
  double timed_seconds_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point item_start_;
};

std::string FormatDuration(double seconds);

}  // namespace tb
