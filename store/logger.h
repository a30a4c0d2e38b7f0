// The one narrow logging interface every sink implements, and the fan-out that feeds them.
// Loggers record what they are given; they never compute or select metrics.
//
//   tb::FanOutLogger log;
//   log.Add(std::make_unique<tb::SqliteLogger>(store_path, run_id));
//   log.Add(std::make_unique<MyConsoleLogger>());
//   log.Scalar("train/loss", 0.42, /*step=*/10);
//   log.Histogram("merger/hist/predicted", values, /*step=*/3);   // W&B's histogram, 64 bins
//   log.Summary({{"transfer_rate", 0.97}});
//   log.RunEnded(tb::RunStatus::kFinished, /*exit_code=*/0, "");
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/run_store.h"

namespace tb {

// W&B's histogram object of `values` ({"_type": "histogram", "values": counts, "bins": edges}):
// `bins` equal bins from the smallest to the largest finite value, the last closed, as
// numpy.histogram (and wandb.Histogram) make them; all values equal: the range value ± 0.5.
// Non-finite values are left out. BadInput for bins outside 1..512 (W&B's limit).
nlohmann::json HistogramJson(const std::vector<double>& values, int bins = 64);

class RunLogger {
 public:
  virtual ~RunLogger() = default;
  virtual void Scalar(std::string_view key, double value, int64_t step) = 0;
  // A distribution at a step, stored as one metric row carrying HistogramJson(values) (its value
  // the number of finite samples) and mirrored as a W&B histogram. Sinks that keep no
  // histograms ignore it.
  virtual void Histogram(std::string_view key, const std::vector<double>& values, int64_t step) {}
  virtual void Summary(const std::map<std::string, double>& values) = 0;
  // A line of human-readable output (W&B shows it as the run's console log).
  virtual void Text(std::string_view line) {}
  // Flushes everything buffered and records the final state.
  virtual void RunEnded(RunStatus status, int exit_code, const std::string& error) = 0;
};

// Sends every call to each of its loggers, in the order they were added.
class FanOutLogger : public RunLogger {
 public:
  void Add(std::unique_ptr<RunLogger> logger) { loggers_.push_back(std::move(logger)); }
  void Scalar(std::string_view key, double value, int64_t step) override;
  void Histogram(std::string_view key, const std::vector<double>& values, int64_t step) override;
  void Summary(const std::map<std::string, double>& values) override;
  void Text(std::string_view line) override;
  void RunEnded(RunStatus status, int exit_code, const std::string& error) override;

 private:
  std::vector<std::unique_ptr<RunLogger>> loggers_;
};

// Writes to the run store: scalars are buffered and committed in one transaction every
// `flush_rows` rows or `flush_seconds` seconds (whichever comes first), and always before a
// summary or the end of the run. A background thread keeps the run's heartbeat fresh, so a
// run that dies without a word is shown as crashed.
class SqliteLogger : public RunLogger {
 public:
  SqliteLogger(const std::string& store_path, std::string run_id, size_t flush_rows = 512,
               double flush_seconds = 2.0, double heartbeat_seconds = 10.0);
  ~SqliteLogger() override;

  void Scalar(std::string_view key, double value, int64_t step) override;
  void Histogram(std::string_view key, const std::vector<double>& values, int64_t step) override;
  void Summary(const std::map<std::string, double>& values) override;
  void Text(std::string_view line) override;
  void RunEnded(RunStatus status, int exit_code, const std::string& error) override;
  void Flush();

 private:
  void HeartbeatLoop(std::string store_path, double period);
  void FlushWith(RunStore& store);

  RunStore store_;
  std::string run_id_;
  size_t flush_rows_;
  double flush_seconds_;
  double last_flush_;
  // Rows wait here until a flush; the background thread flushes them too, so a silent phase
  // never holds rows back for more than flush_seconds. write_mutex_ keeps the store's row order
  // the logging order.
  std::mutex write_mutex_;
  std::vector<MetricRow> pending_;
  std::vector<LogLine> pending_lines_;
  bool ended_ = false;

  std::mutex beat_mutex_;
  std::condition_variable beat_cv_;
  bool stop_beat_ = false;
  std::thread beat_thread_;
};

}  // namespace tb
