#include "experiments/cli/console.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include <fmt/format.h>

namespace tb {

bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

bool UseColor() {
  const char* no_color = std::getenv("NO_COLOR");
  return StderrIsTerminal() && (no_color == nullptr || no_color[0] == '\0');
}

std::string FormatDuration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void ConsoleLogger::Scalar(std::string_view key, double value, int64_t step) {
  if (verbose_) std::cerr << fmt::format("  {} = {:.6g} (step {})\n", key, value, step);
}

void ConsoleLogger::Text(std::string_view line) {
  if (verbose_) std::cerr << "  " << line << "\n";
}

void ConsoleLogger::RunEnded(RunStatus status, int exit_code, const std::string& error) {
  // The caller reports a failure, once: `run` as its error line, suites on the progress line.
  if (verbose_ && status != RunStatus::kFinished) std::cerr << "  run ended: " << ToString(status) << "\n";
}

Progress::Progress(int64_t total) : total_(total), tty_(StderrIsTerminal()) {}

std::string Progress::Eta() const {
  if (timed_ == 0) return "ETA --";
  const double per_item = timed_seconds_ / static_cast<double>(timed_);
  return "ETA " + FormatDuration(per_item * static_cast<double>(total_ - done_));
}

void Progress::Start(const std::string& label) {
  item_start_ = std::chrono::steady_clock::now();
  if (!tty_) return;
  const int pct = total_ > 0 ? static_cast<int>(100 * done_ / total_) : 100;
  std::string line = fmt::format("[{}/{}] {:3}% {} {}", done_ + 1, total_, pct, Eta(), label);
  if (line.size() > 110) line = line.substr(0, 107) + "...";
  std::cerr << "\r\033[K" << line << std::flush;
}

void Progress::Done(const std::string& label, const std::string& result, bool counts_for_eta) {
  ++done_;
  if (counts_for_eta) {
    ++timed_;
    timed_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - item_start_).count();
  }
  if (tty_) std::cerr << "\r\033[K";
  std::cerr << fmt::format("[{}/{}] {}  {}\n", done_, total_, label, result);
}

void Progress::Finish() {
  if (tty_) std::cerr << "\r\033[K" << std::flush;
}

std::string Headline(const std::map<std::string, double>& summary) {
  auto has = [&](const std::string& k) { return summary.count(k) > 0; };
  if (has("transfer_rate")) {
    return fmt::format("transfer {:.3f} preservation {:.3f}", summary.at("transfer_rate"),
                       has("preservation") ? summary.at("preservation") : NAN);
  }
  if (has("iid_acc")) {
    std::string out = fmt::format("iid {:.3f}", summary.at("iid_acc"));
    int last = 0;
    for (const auto& [k, v] : summary) {
      if (k.rfind("iid_acc_ft", 0) == 0) last = std::max(last, std::atoi(k.c_str() + 10));
    }
    if (last > 0) out += fmt::format(", after {} epoch{} {:.3f}", last, last == 1 ? "" : "s", summary.at(fmt::format("iid_acc_ft{}", last)));
    return out;
  }
  if (has("avg_acc")) {
    return fmt::format("avg acc {:.3f} forgetting {:.3f}", summary.at("avg_acc"),
                       has("forgetting_max") ? summary.at("forgetting_max") : NAN);
  }
  return "-";
}

}  // namespace tb
