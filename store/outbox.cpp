#include "store/outbox.h"

#include <cstdlib>

#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>

namespace tb {
namespace {

// sync_state.state: {"crash_heartbeat": seconds} while the acknowledged final state is a
// derived crash, {} otherwise.
std::optional<double> CrashHeartbeat(const std::string& state) {
  const auto j = nlohmann::json::parse(state.empty() ? "{}" : state, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("crash_heartbeat") && j["crash_heartbeat"].is_number()) {
    return j["crash_heartbeat"].get<double>();
  }
  return std::nullopt;
}

}  // namespace

void Outbox::EnsureRow(const std::string& run_id) {
  SQLite::Statement insert(store_.db(),
                           "INSERT OR IGNORE INTO sync_state (run_id, sink, updated_at) VALUES (?, ?, ?)");
  insert.bind(1, run_id);
  insert.bind(2, sink_);
  insert.bind(3, NowSeconds());
  insert.exec();
}

SyncState Outbox::Get(const std::string& run_id) {
  SyncState s;
  s.run_id = run_id;
  s.sink = sink_;
  SQLite::Statement q(store_.db(), R"sql(
    SELECT remote_id, history_sent, metrics_cursor, output_sent, logs_cursor, summary_hash,
           final_sent, last_error, state
    FROM sync_state WHERE run_id = ? AND sink = ?)sql");
  q.bind(1, run_id);
  q.bind(2, sink_);
  if (q.executeStep()) {
    s.remote_id = q.getColumn(0).getString();
    s.history_sent = q.getColumn(1).getInt64();
    s.metrics_cursor = q.getColumn(2).getInt64();
    s.output_sent = q.getColumn(3).getInt64();
    s.logs_cursor = q.getColumn(4).getInt64();
    s.summary_hash = q.getColumn(5).getString();
    s.final_sent = q.getColumn(6).getInt() != 0;
    s.last_error = q.getColumn(7).getString();
    if (s.final_sent) s.crash_heartbeat = CrashHeartbeat(q.getColumn(8).getString());
  }
  return s;
}

void Outbox::Acknowledge(const SyncState& s) {
  SQLite::Transaction tx(store_.db(), SQLite::TransactionBehavior::IMMEDIATE);
  EnsureRow(s.run_id);
  SQLite::Statement update(store_.db(), R"sql(
    UPDATE sync_state SET
      remote_id = CASE WHEN ? != '' THEN ? ELSE remote_id END,
      history_sent = MAX(history_sent, ?), metrics_cursor = MAX(metrics_cursor, ?),
      output_sent = MAX(output_sent, ?), logs_cursor = MAX(logs_cursor, ?),
      summary_hash = CASE WHEN ? != '' THEN ? ELSE summary_hash END,
      final_sent = MAX(final_sent, ?), state = CASE WHEN ? THEN ? ELSE state END,
      last_error = '', updated_at = ?
    WHERE run_id = ? AND sink = ?)sql");
  int i = 1;
  update.bind(i++, s.remote_id);
  update.bind(i++, s.remote_id);
  update.bind(i++, s.history_sent);
  update.bind(i++, s.metrics_cursor);
  update.bind(i++, s.output_sent);
  update.bind(i++, s.logs_cursor);
  update.bind(i++, s.summary_hash);
  update.bind(i++, s.summary_hash);
  update.bind(i++, s.final_sent ? 1 : 0);
  update.bind(i++, s.final_sent ? 1 : 0);  // the final state comes with what it was sent for
  update.bind(i++, s.crash_heartbeat ? nlohmann::json{{"crash_heartbeat", *s.crash_heartbeat}}.dump() : "{}");
  update.bind(i++, NowSeconds());
  update.bind(i++, s.run_id);
  update.bind(i++, sink_);
  update.exec();
  tx.commit();
}

void Outbox::RecordError(const std::string& run_id, const std::string& error) {
  SQLite::Transaction tx(store_.db(), SQLite::TransactionBehavior::IMMEDIATE);
  EnsureRow(run_id);
  SQLite::Statement update(store_.db(),
                           "UPDATE sync_state SET last_error = ?, updated_at = ? WHERE run_id = ? AND sink = ?");
  update.bind(1, error);
  update.bind(2, NowSeconds());
  update.bind(3, run_id);
  update.bind(4, sink_);
  update.exec();
  tx.commit();
}

void Outbox::Reopen(const std::string& run_id) {
  SQLite::Statement update(store_.db(), R"sql(
    UPDATE sync_state SET final_sent = 0, remote_id = '', state = '{}', updated_at = ?
    WHERE run_id = ? AND sink = ?)sql");
  update.bind(1, NowSeconds());
  update.bind(2, run_id);
  update.bind(3, sink_);
  update.exec();
}

bool Outbox::TryLease(const std::string& run_id, const std::string& owner, double seconds) {
  SQLite::Transaction tx(store_.db(), SQLite::TransactionBehavior::IMMEDIATE);
  EnsureRow(run_id);
  const double now = NowSeconds();
  double cutoff = now;  // a lease that ends before this is free
  {
    // A lease held by a process of this host that no longer exists is free ("host:pid:...").
    SQLite::Statement q(store_.db(), "SELECT lease_owner FROM sync_state WHERE run_id = ? AND sink = ?");
    q.bind(1, run_id);
    q.bind(2, sink_);
    if (q.executeStep()) {
      const std::string holder = q.getColumn(0).getString();
      const auto colon = holder.find(':');
      if (colon != std::string::npos && holder.substr(0, colon) == HostName()) {
        const int64_t pid = std::atoll(holder.c_str() + colon + 1);
        if (pid > 0 && !ProcessAlive(pid)) cutoff = 1e300;
      }
    }
  }
  SQLite::Statement take(store_.db(), R"sql(
    UPDATE sync_state SET lease_owner = ?, lease_until = ?
    WHERE run_id = ? AND sink = ? AND (lease_owner = '' OR lease_owner = ? OR lease_until < ?))sql");
  take.bind(1, owner);
  take.bind(2, now + seconds);
  take.bind(3, run_id);
  take.bind(4, sink_);
  take.bind(5, owner);
  take.bind(6, cutoff);
  const bool taken = take.exec() == 1;
  tx.commit();
  return taken;
}

void Outbox::ReleaseLease(const std::string& run_id, const std::string& owner) {
  SQLite::Statement release(store_.db(), R"sql(
    UPDATE sync_state SET lease_owner = '', lease_until = 0
    WHERE run_id = ? AND sink = ? AND lease_owner = ?)sql");
  release.bind(1, run_id);
  release.bind(2, sink_);
  release.bind(3, owner);
  release.exec();
}

std::vector<std::string> Outbox::PendingRuns() {
  SQLite::Statement q(store_.db(), R"sql(
    SELECT r.id, r.heartbeat_at, COALESCE(s.final_sent, 0), COALESCE(s.state, '{}')
    FROM runs r LEFT JOIN sync_state s ON s.run_id = r.id AND s.sink = ?
    WHERE s.final_sent IS NULL OR s.final_sent = 0 OR s.state != '{}'
    ORDER BY r.started_at, r.id)sql");
  q.bind(1, sink_);
  std::vector<std::string> ids;
  while (q.executeStep()) {
    SyncState s;
    s.final_sent = q.getColumn(2).getInt() != 0;
    if (s.final_sent) s.crash_heartbeat = CrashHeartbeat(q.getColumn(3).getString());
    if (!s.final_sent || s.Superseded(q.getColumn(1).getDouble())) ids.push_back(q.getColumn(0).getString());
  }
  return ids;
}

}  // namespace tb
