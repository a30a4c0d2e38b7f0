#include "store/logger.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "store/errors.h"

namespace tb {

nlohmann::json HistogramJson(const std::vector<double>& values, int bins) {
  if (bins < 1 || bins > 512) throw BadInput(fmt::format("histogram bins={}: expected 1..512 (W&B's limit)", bins));
  double lo = INFINITY, hi = -INFINITY;
  for (double v : values) {
    if (std::isfinite(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;  // nothing finite: numpy's empty range
  if (lo == hi) lo -= 0.5, hi += 0.5;
  std::vector<double> edges(bins + 1);
  const double step = (hi - lo) / bins;  // as numpy.linspace: i · step + lo, the last edge exact
  for (int i = 0; i <= bins; ++i) edges[i] = i * step + lo;
  edges[bins] = hi;
  std::vector<int64_t> counts(bins, 0);
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    // numpy: the bin from the scaled position, corrected against the edges it computed.
    int64_t b = std::min<int64_t>(bins - 1, static_cast<int64_t>((v - lo) * (bins / (hi - lo))));
    while (b > 0 && v < edges[b]) --b;
    while (b < bins - 1 && v >= edges[b + 1]) ++b;
    ++counts[b];
  }
  return {{"_type", "histogram"}, {"values", counts}, {"bins", edges}};
}

void FanOutLogger::Scalar(std::string_view key, double value, int64_t step) {
  for (auto& l : loggers_) l->Scalar(key, value, step);
}
void FanOutLogger::Histogram(std::string_view key, const std::vector<double>& values, int64_t step) {
  for (auto& l : loggers_) l->Histogram(key, values, step);
}
void FanOutLogger::Summary(const std::map<std::string, double>& values) {
  for (auto& l : loggers_) l->Summary(values);
}
void FanOutLogger::Text(std::string_view line) {
  for (auto& l : loggers_) l->Text(line);
}
void FanOutLogger::RunEnded(RunStatus status, int exit_code, const std::string& error) {
  for (auto& l : loggers_) l->RunEnded(status, exit_code, error);
}

SqliteLogger::SqliteLogger(const std::string& store_path, std::string run_id, size_t flush_rows,
                           double flush_seconds, double heartbeat_seconds)
    : store_(store_path),
      run_id_(std::move(run_id)),
      flush_rows_(flush_rows),
      flush_seconds_(flush_seconds),
      last_flush_(NowSeconds()) {
  beat_thread_ = std::thread(&SqliteLogger::HeartbeatLoop, this, store_path, heartbeat_seconds);
}

SqliteLogger::~SqliteLogger() {
  {
    std::lock_guard<std::mutex> lock(beat_mutex_);
    stop_beat_ = true;
  }
  beat_cv_.notify_all();
  if (beat_thread_.joinable()) beat_thread_.join();
  try {
    Flush();
  } catch (...) {
    // A destructor must not throw; the rows stay lost only if the database is unwritable.
  }
}

void SqliteLogger::HeartbeatLoop(std::string store_path, double period) {
  // Its own connection: a SQLiteCpp connection is not shared between threads.
  std::unique_ptr<RunStore> store;
  double last_beat = NowSeconds();
  const double tick = std::min(period, flush_seconds_);
  std::unique_lock<std::mutex> lock(beat_mutex_);
  while (!beat_cv_.wait_for(lock, std::chrono::duration<double>(tick), [&] { return stop_beat_; })) {
    lock.unlock();  // no lock held across database work
    try {
      if (!store) store = std::make_unique<RunStore>(store_path);
      FlushWith(*store);
      if (NowSeconds() - last_beat >= period) {
        store->Heartbeat(run_id_);
        last_beat = NowSeconds();
      }
    } catch (...) {
      // A busy or briefly unavailable database only delays the next flush or heartbeat.
    }
    lock.lock();
  }
}

void SqliteLogger::Scalar(std::string_view key, double value, int64_t step) {
  bool flush;
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    pending_.push_back(MetricRow{step, std::string(key), value, NowSeconds()});
    flush = pending_.size() >= flush_rows_;
  }
  if (flush) Flush();
}

void SqliteLogger::Histogram(std::string_view key, const std::vector<double>& values, int64_t step) {
  const nlohmann::json h = HistogramJson(values);
  int64_t n = 0;
  for (int64_t c : h["values"]) n += c;
  MetricRow row{step, std::string(key), static_cast<double>(n), NowSeconds()};
  row.data = h.dump();
  std::lock_guard<std::mutex> lock(write_mutex_);
  pending_.push_back(std::move(row));
}

void SqliteLogger::Text(std::string_view line) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  pending_lines_.push_back(LogLine{0, std::string(line), NowSeconds()});
}

void SqliteLogger::FlushWith(RunStore& store) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (!pending_.empty()) {
    store.AppendMetrics(run_id_, pending_);
    pending_.clear();
  }
  if (!pending_lines_.empty()) {
    store.AppendLogs(run_id_, pending_lines_);
    pending_lines_.clear();
  }
  last_flush_ = NowSeconds();
}

void SqliteLogger::Flush() { FlushWith(store_); }

void SqliteLogger::Summary(const std::map<std::string, double>& values) {
  Flush();
  store_.SetSummary(run_id_, values);
}

void SqliteLogger::RunEnded(RunStatus status, int exit_code, const std::string& error) {
  if (ended_) return;
  Flush();
  store_.FinishRun(run_id_, status, exit_code, error);
  ended_ = true;
}

}  // namespace tb
