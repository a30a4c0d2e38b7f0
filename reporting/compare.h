// The regression gate behind `transferbench compare BASE NEW`: two sets of runs (a suite, a
// commit's runs, or another store file each), paired by seed within each config group, every
// summary metric's mean paired change with a Wilcoxon signed-rank test, and a verdict. No torch.
//
//   tb::CompareSide base = tb::LoadSide("nightly-main.db", "results/runs.db", "nightly");
//   tb::CompareSide next = tb::LoadSide("3f2c1ab", "results/runs.db", "nightly");
//   tb::Comparison c = tb::Compare(base, next);
//   std::cout << tb::RenderCompareMarkdown(c);
//   return tb::Regressed(c) ? 3 : 0;  // BadInput from any step: exit code 2
//
// Why pairs: runs are deterministic per seed, so seed s on both sides measured the same thing
// but for the code. An unpaired rank test (Mann-Whitney U, as asv and google/benchmark's
// compare.py use) over the nightly's 3 seeds against 3 cannot give a two-sided p below 0.1; the
// signed-rank test over n pairs that differ can reach 2 / 2^n, and the gate also pools every
// pair of a method (dozens). A verdict needs both a change beyond the metric's threshold and
// p < alpha; a change beyond the threshold that the test cannot confirm gets a note saying why.
//
// Config group: MeasuredConfig(run) (report.h) without "seed" and "runner_version" (comparing
// across code versions is the point), plus the method. Groups of one side only are listed;
// runs of a shared group whose seed the other side lacks are listed as unpaired.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/run_store.h"

namespace tb {

// One side of a comparison: its runs (at most one per config and seed) and their summaries.
struct CompareSide {
  std::string label;  // the spec it was loaded from
  std::vector<RunRecord> runs;
  std::map<std::string, std::map<std::string, double>> summaries;  // by run id
};

// Reads `spec`, decided in this order (BadInput naming the value when nothing matches; a store
// file that does not exist is never created):
//   "suite:NAME" / "commit:HEX"  forces the reading (a suite whose name is all hex digits);
//   FILE.db[:SUITE], or any path with '/'  that store's ReportRuns(SUITE, else suite_filter);
//   7 to 40 hex digits  a git commit prefix in default_store: its finished runs (of suite_filter
//                       if set), the newest per config; a prefix of two commits is an error;
//   anything else  a suite in default_store: ReportRuns(default_store, NAME).
CompareSide LoadSide(const std::string& spec, const std::string& default_store, const std::string& suite_filter);

enum class Direction { kHigherIsBetter, kLowerIsBetter, kNone };
enum class Scale { kAbsolute, kRatio };  // ratio: tested on log(new / base); positive values only
enum class Verdict { kRegressed, kImproved, kChanged, kUnchanged };  // changed: no direction known
std::string ToString(Direction direction);
std::string ToString(Verdict verdict);

// How a metric is judged. The rules (MetricRules(), first match wins; a pattern is a key, or
// "prefix*" or "*suffix"):
//   time/*                           lower, ratio, 1.10 (10% slower regresses)
//   *_reached                        higher, 0.01 (the share of runs that reached a target)
//   catchup_*, steps_to_*            lower, 10 steps (finetune.eval_every)
//   degradation                      lower, 1.0 (it is in percentage points already)
//   false_transfer, forgetting_*, collapse, stability   lower, 0.01 (one point)
//   union_weight_mse                 lower, ratio, 1.10 (its scale depends on the layers)
//   barrier_*                        lower, 0.05 (nats of test cross-entropy)
//   transfer_rate, preservation, acc_after, joint_acc, per_task_acc, normalized_acc, iid_acc*,
//   shift_acc, avg_acc*, bwt*, fwt*, acc_class_*   higher, 0.01 (one point)
//   anything else (acc_before, ood_acc, references, diagnostics, matrices)   no direction,
//   threshold 0: "changed" when significant, never a regression.
struct MetricRule {
  std::string pattern;
  Direction direction = Direction::kNone;
  Scale scale = Scale::kAbsolute;
  double threshold = 0;   // absolute: |mean paired difference|; ratio: geometric mean ratio (>= 1)
  bool fraction = false;  // a fraction in [0, 1]: shown as % and its changes in points
};
const std::vector<MetricRule>& MetricRules();
MetricRule RuleFor(const std::string& metric);

struct CompareOptions {
  double alpha = 0.05;
  // Overrides by metric key, or by a rule's pattern ("iid_acc*"); a key that is neither a
  // compared metric nor a pattern is BadInput (a typo must not pass as "no regression").
  std::map<std::string, double> thresholds;
};

// One metric of one config group (scope "group") or of all a method's pairs (scope "method").
struct MetricChange {
  std::string scope, method, group, group_id;  // group: its label ("" for scope "method")
  std::string metric;
  MetricRule rule;      // with the threshold in force
  int64_t groups = 0;   // config groups the pairs come from
  int64_t pairs = 0;    // pairs with the metric finite (and positive, for ratios) on both sides
  int64_t nonzero = 0;  // pairs whose values differ: the test's n
  double base_mean = 0, new_mean = 0;
  double change = 0;  // mean of new - base; for ratios the geometric mean of new / base
  double p = 1;       // SignedRankP of the paired differences (log ratios for ratios)
  double min_p = 1;   // MinimumSignedRankP(nonzero)
  Verdict verdict = Verdict::kUnchanged;
  std::string note;  // why a change beyond the threshold got no verdict
};

struct GroupSummary {
  std::string id, method, label;
  std::vector<int64_t> seeds;
};

struct Comparison {
  std::string base_label, new_label;
  CompareOptions options;
  int64_t groups = 0, pairs = 0;      // on both sides
  std::vector<MetricChange> changes;  // method level first, then groups; each by label, metric
  std::vector<GroupSummary> only_base, only_new;
  std::vector<GroupSummary> unpaired_base, unpaired_new;  // shared groups: seeds the other side lacks
};

Comparison Compare(const CompareSide& base, const CompareSide& next, const CompareOptions& options = {});

// Whether any method-level or group-level verdict is kRegressed (the CLI's exit code 3).
bool Regressed(const Comparison& comparison);

// Markdown for a pull-request comment or the nightly mail: the counts, regressions, improvements,
// the unchanged count, under-powered changes, groups of one side only. CSV and JSON hold every
// MetricChange, one row per group × metric and method × metric.
std::string RenderCompareMarkdown(const Comparison& comparison);
std::string RenderCompareCsv(const Comparison& comparison);
nlohmann::json CompareJson(const Comparison& comparison);

// Wilcoxon signed-rank test, two-sided, of the differences' median being 0. Zero differences
// are dropped (Wilcoxon's method, scipy's zero_method="wilcox"); |d| equal to a relative 1e-9
// are tied and get mid-ranks. Exact for up to 200 nonzero differences: the permutation
// distribution of the sum of positive ranks, by dynamic programming over doubled (integer)
// mid-ranks, so ties stay exact; above that the normal approximation with the tie correction of
// the variance and a continuity correction. p = min(1, 2 min(P(W+ <= w), P(W+ >= w))); 1 for
// no nonzero difference.
double SignedRankP(const std::vector<double>& diffs);

// The smallest two-sided p the test can give with n nonzero differences (all of one sign):
// 2 / 2^n, 1 when n <= 1.
double MinimumSignedRankP(int64_t n);

}  // namespace tb
