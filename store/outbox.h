// The outbox: what each sink (W&B, ...) has acknowledged of each run, kept in the store's
// sync_state table. SQLite is the source of truth; a sink is sent what lies past its cursors,
// and a cursor moves only after the sink acknowledged, so nothing is lost and nothing is sent
// twice. A lease lets one sender at a time work on a (run, sink): the live run's own sender,
// or `transferbench sync`.
//
//   tb::Outbox outbox(store, settings.Sink());   // one sink per destination
//   if (outbox.TryLease(run_id, owner, /*seconds=*/30)) {
//     tb::SyncState s = outbox.Get(run_id);
//     ... send what lies past s.metrics_cursor ...
//     s.history_sent += sent_lines; s.metrics_cursor = last_id;
//     outbox.Acknowledge(s);
//     outbox.ReleaseLease(run_id, owner);
//   }
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/run_store.h"

namespace tb {

struct SyncState {
  std::string run_id;
  std::string sink;
  std::string remote_id;      // the sink's id for the run (empty until created there)
  int64_t history_sent = 0;   // history lines acknowledged
  int64_t metrics_cursor = 0; // id of the last metric row inside an acknowledged line
  int64_t output_sent = 0;    // console lines acknowledged
  int64_t logs_cursor = 0;    // id of the last acknowledged console line
  std::string summary_hash;   // digest of the last acknowledged summary
  bool final_sent = false;    // the final state (complete, exit code) was acknowledged
  // Set when that final state was a crash the store only derived from a stale heartbeat (the
  // row still says running): the heartbeat the row had then. Such a run may be alive (another
  // host's clock behind, a suspended process); once its heartbeat moves on, the crash is
  // superseded and the run is sent again from the cursors.
  std::optional<double> crash_heartbeat;
  std::string last_error;

  bool Superseded(double heartbeat_at) const {
    return final_sent && crash_heartbeat && heartbeat_at > *crash_heartbeat;
  }
};

class Outbox {
 public:
  Outbox(RunStore& store, std::string sink) : store_(store), sink_(std::move(sink)) {}

  // The stored state, or a fresh one (nothing sent) if the sink has never seen the run.
  SyncState Get(const std::string& run_id);

  // Records acknowledged progress. Counters and cursors never move backwards, so a slower
  // concurrent sender cannot undo a faster one's progress.
  void Acknowledge(const SyncState& state);
  void RecordError(const std::string& run_id, const std::string& error);
  // Withdraws a superseded final state: the run is pending again, and the sink's run is to be
  // resumed (created again under the same id, then sent what lies past the cursors, which stay).
  void Reopen(const std::string& run_id);

  // Takes the (run, sink) lease for `seconds` if it is free, expired, or already `owner`'s.
  bool TryLease(const std::string& run_id, const std::string& owner, double seconds);
  void ReleaseLease(const std::string& run_id, const std::string& owner);

  // Runs whose final state this sink has not acknowledged, or has acknowledged as a derived
  // crash that the run's heartbeat has since superseded, oldest first.
  std::vector<std::string> PendingRuns();

  const std::string& sink() const { return sink_; }

 private:
  void EnsureRow(const std::string& run_id);
  RunStore& store_;
  std::string sink_;
};

}  // namespace tb
