#include "reporting/compare.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "reporting/report.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {

// ---- The signed-rank test ------------------------------------------------------------------

namespace {

// Up to this many nonzero differences the distribution is enumerated: O(n^3) on doubled ranks
// (8 million additions at 200), which every metric of every group and method can afford.
constexpr int64_t kExactLimit = 200;

}  // namespace

double MinimumSignedRankP(int64_t n) {
  if (n <= 1) return 1.0;
  return 2.0 * std::ldexp(1.0, -static_cast<int>(std::min<int64_t>(n, 2000)));
}

double SignedRankP(const std::vector<double>& diffs) {
  std::vector<double> d;
  for (double x : diffs) {
    if (!std::isfinite(x)) throw std::invalid_argument(fmt::format("SignedRankP: difference {} is not finite", x));
    if (x != 0) d.push_back(x);
  }
  const auto n = static_cast<int64_t>(d.size());
  if (n == 0) return 1.0;
  std::sort(d.begin(), d.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
  // Doubled mid-ranks, integers: the tie group at ranks i+1..j shares (i+1+j)/2. |d| computed as
  // differences of equal steps (accuracies on the same test set) may differ in the last bits, so
  // ties are equal to a relative 1e-9.
  std::vector<int64_t> ranks2(d.size());
  int64_t w2 = 0;       // doubled sum of the positive differences' ranks
  double tie_term = 0;  // sum of t^3 - t over tie groups, for the normal approximation
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && std::abs(d[j]) - std::abs(d[i]) <= 1e-9 * std::abs(d[i])) ++j;
    for (int64_t k = i; k < j; ++k) {
      ranks2[k] = i + 1 + j;
      if (d[k] > 0) w2 += ranks2[k];
    }
    const auto t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  if (n <= kExactLimit) {
    // P(doubled W+ = s) under the null: each rank positive with probability 1/2, independently.
    const int64_t total = n * (n + 1);
    std::vector<double> dist(total + 1, 0.0);
    dist[0] = 1.0;
    int64_t reach = 0;
    for (int64_t r : ranks2) {
      reach += r;
      for (int64_t s = reach; s >= 0; --s) dist[s] = 0.5 * dist[s] + (s >= r ? 0.5 * dist[s - r] : 0.0);
    }
    double lower = 0, upper = 0;
    for (int64_t s = 0; s <= total; ++s) {
      if (s <= w2) lower += dist[s];
      if (s >= w2) upper += dist[s];
    }
    return std::min(1.0, 2.0 * std::min(lower, upper));
  }
  const double nn = static_cast<double>(n);
  const double mean = nn * (nn + 1) / 4;
  const double var = nn * (nn + 1) * (2 * nn + 1) / 24 - tie_term / 48;
  const double z = std::max(0.0, std::abs(static_cast<double>(w2) / 2 - mean) - 0.5) / std::sqrt(var);
  return std::min(1.0, std::erfc(z / std::sqrt(2.0)));
}

// ---- Metric rules --------------------------------------------------------------------------

namespace {

bool StartsWith(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool Matches(const std::string& pattern, const std::string& key) {
  if (!pattern.empty() && pattern.back() == '*') return StartsWith(key, pattern.substr(0, pattern.size() - 1));
  if (!pattern.empty() && pattern.front() == '*') return EndsWith(key, pattern.substr(1));
  return pattern == key;
}

}  // namespace

std::string ToString(Direction direction) {
  switch (direction) {
    case Direction::kHigherIsBetter:
      return "higher";
    case Direction::kLowerIsBetter:
      return "lower";
    case Direction::kNone:
      break;
  }
  return "none";
}

std::string ToString(Verdict verdict) {
  switch (verdict) {
    case Verdict::kRegressed:
      return "regressed";
    case Verdict::kImproved:
      return "improved";
    case Verdict::kChanged:
      return "changed";
    case Verdict::kUnchanged:
      break;
  }
  return "unchanged";
}

const std::vector<MetricRule>& MetricRules() {
  static const std::vector<MetricRule> kRules = [] {
    const auto higher = Direction::kHigherIsBetter, lower = Direction::kLowerIsBetter;
    const auto absolute = Scale::kAbsolute, ratio = Scale::kRatio;
    std::vector<MetricRule> r = {{"time/*", lower, ratio, 1.10, false},
                                 {"*_reached", higher, absolute, 0.01, true},  // before catchup_* and steps_to_*
                                 {"catchup_*", lower, absolute, 10, false},
                                 {"steps_to_*", lower, absolute, 10, false},
                                 {"degradation", lower, absolute, 1.0, false}};
    for (const char* p : {"false_transfer", "forgetting_*", "collapse", "stability"}) {
      r.push_back({p, lower, absolute, 0.01, true});
    }
    r.push_back({"union_weight_mse", lower, ratio, 1.10, false});
    r.push_back({"barrier_*", lower, absolute, 0.05, false});
    r.push_back({"dead_capacity", lower, absolute, 0.01, true});
    r.push_back({"*_bpc", lower, absolute, 0.02, false});  // bits per character (text tasks)
    r.push_back({"speedup", higher, absolute, 0.1, false});
    for (const char* p : {"transfer_rate", "preservation", "acc_after", "joint_acc", "per_task_acc", "normalized_acc",
                          "iid_acc*", "shift_acc", "avg_acc*", "bwt*", "fwt*", "acc_class_*", "step0", "final",
                          "aulc", "aulc_gain"}) {
      r.push_back({p, higher, absolute, 0.01, true});
    }
    return r;
  }();
  return kRules;
}

MetricRule RuleFor(const std::string& metric) {
  for (const auto& rule : MetricRules()) {
    if (Matches(rule.pattern, metric)) return rule;
  }
  return {"*", Direction::kNone, Scale::kAbsolute, 0, false};
}

// ---- Loading a side ------------------------------------------------------------------------

namespace {

constexpr const char* kExpected =
    "expected a suite name, a git commit (7 to 40 hex digits) or an existing store file "
    "(FILE.db[:SUITE])";

bool IsHex(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// RunStore creates a missing file: a typo must not leave an empty store behind.
void RequireFile(const std::string& path, const std::string& spec) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw BadInput(fmt::format("compare '{}': store file {} does not exist ({})", spec, path, kExpected));
  }
}

CompareSide WithSummaries(RunStore& store, const std::string& label, std::vector<RunRecord> runs) {
  CompareSide side;
  side.label = label;
  for (const auto& r : runs) side.summaries[r.id] = store.Summary(r.id);
  side.runs = std::move(runs);
  return side;
}

std::vector<RunRecord> CommitRuns(RunStore& store, const std::string& spec, std::string prefix,
                                  const std::string& suite) {
  std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                 [](char c) { return std::tolower(static_cast<unsigned char>(c)); });
  if (prefix.size() < 7 || prefix.size() > 40 || !IsHex(prefix)) {
    throw BadInput(fmt::format("compare '{}': expected a git commit of 7 to 40 hex digits", spec));
  }
  RunFilter filter;
  filter.status = RunStatus::kFinished;
  if (!suite.empty()) filter.suite = suite;
  std::set<std::string> commits, seen;
  std::vector<RunRecord> out;
  for (auto& r : store.ListRuns(filter)) {  // newest first: keep the newest run of each config
    if (!StartsWith(r.git_commit, prefix)) continue;
    commits.insert(r.git_commit);
    if (seen.insert(JsonHash(MeasuredConfig(r))).second) out.push_back(std::move(r));
  }
  const std::string of_suite = suite.empty() ? "" : fmt::format(" of suite '{}'", suite);
  if (commits.empty()) {
    throw BadInput(fmt::format("commit '{}': no finished runs{} in {}", spec, of_suite, store.path()));
  }
  if (commits.size() > 1) {
    std::string list;
    for (const auto& c : commits) list += (list.empty() ? "" : ", ") + c;
    throw BadInput(fmt::format("commit '{}' is ambiguous in {}: {}", spec, store.path(), list));
  }
  return out;
}

std::vector<RunRecord> SuiteRuns(RunStore& store, const std::string& spec, const std::string& suite) {
  auto runs = ReportRuns(store, suite);
  if (!runs.empty()) return runs;
  std::set<std::string> suites;
  for (const auto& r : store.ListRuns()) {
    if (!r.suite.empty()) suites.insert(r.suite);
  }
  std::string known;
  for (const auto& s : suites) known += (known.empty() ? "" : ", ") + s;
  throw BadInput(fmt::format(
      "compare '{}': {} in {} ({}; suites there: {})", spec,
      suite.empty() ? std::string("no finished runs") : fmt::format("suite '{}' has no finished runs", suite),
      store.path(), kExpected, known.empty() ? "none" : known));
}

}  // namespace

CompareSide LoadSide(const std::string& spec, const std::string& default_store, const std::string& suite_filter) {
  if (spec.empty()) throw BadInput(fmt::format("compare '': {}", kExpected));
  auto in_default = [&](auto&& load) {
    RequireFile(default_store, spec);
    RunStore store(default_store);
    return WithSummaries(store, spec, load(store));
  };
  if (StartsWith(spec, "suite:")) {
    return in_default([&](RunStore& s) { return SuiteRuns(s, spec, spec.substr(6)); });
  }
  if (StartsWith(spec, "commit:")) {
    return in_default([&](RunStore& s) { return CommitRuns(s, spec, spec.substr(7), suite_filter); });
  }
  const size_t colon = spec.rfind(".db:");
  if (colon != std::string::npos || EndsWith(spec, ".db") || spec.find('/') != std::string::npos) {
    const std::string path = colon != std::string::npos ? spec.substr(0, colon + 3) : spec;
    const std::string suite = colon != std::string::npos ? spec.substr(colon + 4) : suite_filter;
    RequireFile(path, spec);
    RunStore store(path);
    return WithSummaries(store, spec, SuiteRuns(store, spec, suite));
  }
  if (spec.size() >= 7 && spec.size() <= 40 && IsHex(spec)) {
    return in_default([&](RunStore& s) { return CommitRuns(s, spec, spec, suite_filter); });
  }
  return in_default([&](RunStore& s) { return SuiteRuns(s, spec, spec); });
}

// ---- Comparing -----------------------------------------------------------------------------

namespace {

struct Group {
  std::string method;
  nlohmann::json config;
  std::map<int64_t, const RunRecord*> by_seed;
};

std::map<std::string, Group> Index(const CompareSide& side) {
  std::map<std::string, Group> out;
  for (const auto& run : side.runs) {
    nlohmann::json config = MeasuredConfig(run);
    config.erase("seed");
    config.erase("runner_version");
    config["method"] = run.method;
    Group& g = out[JsonHash(config)];
    g.method = run.method;
    g.config = std::move(config);
    g.by_seed.emplace(run.seed, &run);  // a side's first run of a seed stands (ListRuns: the newest)
  }
  return out;
}

std::string ConfigValue(const nlohmann::json& config, const std::string& key) {
  if (!config.contains(key)) return "–";
  const auto& v = config.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Each group's label: its method and the config values in which that method's groups (both
// sides together) differ.
std::map<std::string, std::string> Labels(const std::map<std::string, Group>& a,
                                          const std::map<std::string, Group>& b) {
  std::map<std::string, std::map<std::string, const nlohmann::json*>> by_method;  // method → id → config
  for (const auto* side : {&a, &b}) {
    for (const auto& [id, g] : *side) by_method[g.method][id] = &g.config;
  }
  std::map<std::string, std::string> labels;
  for (const auto& [method, groups] : by_method) {
    std::set<std::string> keys, differing;
    for (const auto& [id, c] : groups) {
      for (const auto& [k, v] : c->items()) keys.insert(k);
    }
    // A digest (the data's SHA-256) names a group only where no readable key does.
    std::set<std::string> digests;
    for (const auto& k : keys) {
      std::set<std::string> values;
      bool digest = true;
      for (const auto& [id, c] : groups) {
        const std::string v = ConfigValue(*c, k);
        values.insert(v);
        digest = digest && v.size() == 64 && IsHex(v);
      }
      if (values.size() > 1) (digest ? digests : differing).insert(k);
    }
    if (differing.empty()) differing = digests;
    std::set<std::string> taken;
    for (const auto& [id, c] : groups) {
      std::string variant;
      for (const auto& k : differing) variant += (variant.empty() ? "" : ", ") + k + "=" + ConfigValue(*c, k);
      std::string label = variant.empty() ? method : fmt::format("{} ({})", method, variant);
      if (!taken.insert(label).second) label += " #" + id.substr(0, 8);  // only a digest sets it apart
      labels[id] = label;
    }
  }
  return labels;
}

struct PairValue {
  double base = 0, next = 0;
};

std::string PairsText(const MetricChange& c) {
  std::string out = fmt::format("{} pair{}", c.pairs, c.pairs == 1 ? "" : "s");
  if (c.nonzero != c.pairs) out += fmt::format(" ({} differ)", c.nonzero);
  return out;
}

void Judge(const std::vector<PairValue>& values, double alpha, MetricChange& c) {
  const bool ratio = c.rule.scale == Scale::kRatio;
  std::vector<double> diffs;
  double sum = 0;
  for (const auto& v : values) {
    // Equal to a relative 1e-12 is no change: a value that went another way through the
    // floating point (a different sum order) is not a difference for the test to rank.
    const bool same = std::abs(v.next - v.base) <= 1e-12 * std::max(std::abs(v.next), std::abs(v.base));
    const double d = same ? 0.0 : ratio ? std::log(v.next / v.base) : v.next - v.base;
    diffs.push_back(d);
    sum += d;
    c.base_mean += v.base;
    c.new_mean += v.next;
    c.nonzero += d != 0;
  }
  c.pairs = static_cast<int64_t>(values.size());
  const double n = static_cast<double>(std::max<int64_t>(c.pairs, 1));
  c.base_mean /= n;
  c.new_mean /= n;
  const double mean = sum / n;
  c.change = ratio ? std::exp(mean) : mean;
  c.p = SignedRankP(diffs);
  c.min_p = MinimumSignedRankP(c.nonzero);
  const double limit = ratio ? std::log(c.rule.threshold) : c.rule.threshold;
  if (mean == 0 || std::abs(mean) <= limit) return;
  // The test ranks the pairs, the threshold reads their mean: a verdict needs both to point one
  // way (19 pairs slightly worse and one much better: significant, mean better; no verdict).
  std::vector<double> sorted = diffs;
  std::sort(sorted.begin(), sorted.end());
  const size_t half = sorted.size() / 2;
  const double median = sorted.size() % 2 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
  if (median != 0 && (median > 0) != (mean > 0)) {
    if (c.rule.direction != Direction::kNone) {
      c.note = fmt::format("{}: the mean change and the median pair disagree in direction (median {:.3g})", PairsText(c),
                           median);
    }
    return;
  }
  if (c.p < alpha) {
    const bool worse = c.rule.direction == Direction::kHigherIsBetter ? mean < 0 : mean > 0;
    c.verdict = c.rule.direction == Direction::kNone ? Verdict::kChanged
                : worse                              ? Verdict::kRegressed
                                                     : Verdict::kImproved;
  } else if (c.rule.direction != Direction::kNone) {
    c.note = c.min_p >= alpha ? fmt::format("{}: the smallest p a signed-rank test can give is {:.3g} {} {:g}",
                                            PairsText(c), c.min_p, c.min_p > alpha ? ">" : "=", alpha)
                              : fmt::format("{}: p = {:.3g} >= {:g}, the pairs do not agree", PairsText(c), c.p, alpha);
  }
}

std::vector<int64_t> Seeds(const Group& g) {
  std::vector<int64_t> out;
  for (const auto& [seed, run] : g.by_seed) out.push_back(seed);
  return out;
}

}  // namespace

Comparison Compare(const CompareSide& base, const CompareSide& next, const CompareOptions& options) {
  if (!(options.alpha > 0 && options.alpha < 1)) {
    throw BadInput(fmt::format("alpha {}: expected 0 < alpha < 1", options.alpha));
  }
  Comparison out;
  out.base_label = base.label;
  out.new_label = next.label;
  out.options = options;
  const auto a = Index(base), b = Index(next);
  const auto labels = Labels(a, b);
  auto summary = [](const CompareSide& side, const RunRecord* run) -> const std::map<std::string, double>& {
    static const std::map<std::string, double> kNone;
    const auto it = side.summaries.find(run->id);
    return it == side.summaries.end() ? kNone : it->second;
  };
  // (group, metric) → pairs; (method, metric) → pairs and the groups they come from.
  std::map<std::string, std::map<std::string, std::vector<PairValue>>> by_group;
  std::map<std::string, std::map<std::string, std::pair<std::vector<PairValue>, std::set<std::string>>>> by_method;
  std::set<std::string> metrics;
  std::map<std::string, std::map<std::string, int64_t>> lost;  // method → metric → pairs
  for (const auto& [id, g] : a) {
    const auto other = b.find(id);
    if (other == b.end()) {
      out.only_base.push_back(GroupSummary{id, g.method, labels.at(id), Seeds(g)});
      continue;
    }
    ++out.groups;
    std::vector<int64_t> lonely;
    for (const auto& [seed, run] : g.by_seed) {
      const auto twin = other->second.by_seed.find(seed);
      if (twin == other->second.by_seed.end()) {
        lonely.push_back(seed);
        continue;
      }
      ++out.pairs;
      const auto& sb = summary(base, run);
      const auto& sn = summary(next, twin->second);
      for (const auto& [key, vb] : sb) {
        const auto it = sn.find(key);
        if (std::isfinite(vb) && (it == sn.end() || !std::isfinite(it->second)) &&
            RuleFor(key).direction != Direction::kNone) {
          ++lost[g.method][key];  // measured before, NaN or gone now
        }
        if (it == sn.end() || !std::isfinite(vb) || !std::isfinite(it->second)) continue;
        if (RuleFor(key).scale == Scale::kRatio && (vb <= 0 || it->second <= 0)) continue;
        metrics.insert(key);
        by_group[id][key].push_back({vb, it->second});
        auto& m = by_method[g.method][key];
        m.first.push_back({vb, it->second});
        m.second.insert(id);
      }
    }
    if (!lonely.empty()) out.unpaired_base.push_back(GroupSummary{id, g.method, labels.at(id), lonely});
    std::vector<int64_t> lonely_new;
    for (const auto& [seed, run] : other->second.by_seed) {
      if (!g.by_seed.count(seed)) lonely_new.push_back(seed);
    }
    if (!lonely_new.empty()) out.unpaired_new.push_back(GroupSummary{id, g.method, labels.at(id), lonely_new});
  }
  for (const auto& [id, g] : b) {
    if (!a.count(id)) out.only_new.push_back(GroupSummary{id, g.method, labels.at(id), Seeds(g)});
  }
  if (out.pairs == 0) {
    throw BadInput(fmt::format("compare {} → {}: no run pairs (a config group and seed on both sides; {} groups only in "
                               "BASE, {} only in NEW): nothing to gate on — the configs differ (threads, data, options?)",
                               base.label, next.label, out.only_base.size(), out.only_new.size()));
  }
  // Threshold overrides: by metric, else by the rule's pattern; each must name something.
  std::set<std::string> patterns;
  for (const auto& r : MetricRules()) patterns.insert(r.pattern);
  for (const auto& [key, value] : options.thresholds) {
    if (!metrics.count(key) && !patterns.count(key)) {
      throw BadInput(fmt::format("threshold for '{}': no such metric on both sides, nor a rule pattern", key));
    }
    const MetricRule rule = patterns.count(key) ? *std::find_if(MetricRules().begin(), MetricRules().end(),
                                                                [&](const MetricRule& r) { return r.pattern == key; })
                                                : RuleFor(key);
    const bool ok = rule.scale == Scale::kRatio ? value >= 1 : value >= 0;
    if (!ok || !std::isfinite(value)) {
      throw BadInput(fmt::format("threshold for '{}' = {}: expected {}", key, value,
                                 rule.scale == Scale::kRatio ? "a ratio >= 1 (1.10: 10% worse)" : "a difference >= 0"));
    }
  }
  auto rule_of = [&](const std::string& metric) {
    MetricRule rule = RuleFor(metric);
    if (auto it = options.thresholds.find(metric); it != options.thresholds.end()) {
      rule.threshold = it->second;
    } else if (auto p = options.thresholds.find(rule.pattern); p != options.thresholds.end()) {
      rule.threshold = p->second;
    }
    return rule;
  };
  for (const auto& [method, by_metric] : by_method) {
    for (const auto& [metric, entry] : by_metric) {
      MetricChange c;
      c.scope = "method";
      c.method = method;
      c.metric = metric;
      c.rule = rule_of(metric);
      c.groups = static_cast<int64_t>(entry.second.size());
      Judge(entry.first, options.alpha, c);
      out.changes.push_back(std::move(c));
    }
  }
  // A metric with a direction that NEW no longer reports (NaN or missing) where BASE did is a
  // regression: a run that stopped measuring must not pass as unchanged.
  for (const auto& [method, by_metric] : lost) {
    for (const auto& [metric, count] : by_metric) {
      MetricChange c;
      c.scope = "method";
      c.method = method;
      c.metric = metric;
      c.rule = rule_of(metric);
      c.pairs = count;
      c.verdict = Verdict::kRegressed;
      c.note = fmt::format("{} pair{}: measured in BASE, NaN or missing in NEW", count, count == 1 ? "" : "s");
      out.changes.push_back(std::move(c));
    }
  }
  std::vector<MetricChange> groups;
  for (const auto& [id, by_metric] : by_group) {
    for (const auto& [metric, values] : by_metric) {
      MetricChange c;
      c.scope = "group";
      c.method = a.at(id).method;
      c.group = labels.at(id);
      c.group_id = id;
      c.metric = metric;
      c.rule = rule_of(metric);
      c.groups = 1;
      Judge(values, options.alpha, c);
      groups.push_back(std::move(c));
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const MetricChange& x, const MetricChange& y) {
    return std::tie(x.group, x.metric) < std::tie(y.group, y.metric);
  });
  out.changes.insert(out.changes.end(), groups.begin(), groups.end());
  auto by_label = [](const GroupSummary& x, const GroupSummary& y) { return x.label < y.label; };
  for (auto* list : {&out.only_base, &out.only_new, &out.unpaired_base, &out.unpaired_new}) {
    std::sort(list->begin(), list->end(), by_label);
  }
  return out;
}

bool Regressed(const Comparison& c) {
  return std::any_of(c.changes.begin(), c.changes.end(),
                     [](const MetricChange& m) { return m.verdict == Verdict::kRegressed; });
}

// ---- Rendering -----------------------------------------------------------------------------

namespace {

std::string Value(const MetricChange& c, double v) {
  return c.rule.fraction ? fmt::format("{:.2f}%", 100 * v) : fmt::format("{:.4g}", v);
}

std::string Change(const MetricChange& c) {
  if (c.rule.scale == Scale::kRatio) return fmt::format("{:+.1f}%", 100 * (c.change - 1));
  return c.rule.fraction ? fmt::format("{:+.2f} pts", 100 * c.change) : fmt::format("{:+.4g}", c.change);
}

std::string Threshold(const MetricChange& c) {
  if (c.rule.scale == Scale::kRatio) return fmt::format("{:.3g}%", 100 * (c.rule.threshold - 1));
  return c.rule.fraction ? fmt::format("{:.3g} pts", 100 * c.rule.threshold) : fmt::format("{:.3g}", c.rule.threshold);
}

std::string Who(const MetricChange& c) {
  return c.scope == "method" ? fmt::format("{} — all {} group{}", c.method, c.groups, c.groups == 1 ? "" : "s")
                             : c.group;
}

std::string SeedList(const std::vector<int64_t>& seeds) {
  std::string out;
  for (int64_t s : seeds) out += (out.empty() ? "" : ", ") + std::to_string(s);
  return out;
}

}  // namespace

std::string RenderCompareMarkdown(const Comparison& c) {
  std::map<Verdict, int64_t> count;
  for (const auto& m : c.changes) ++count[m.verdict];
  std::string out = fmt::format("## Compare: {} → {}\n\n", MarkdownCell(c.base_label), MarkdownCell(c.new_label));
  out += fmt::format(
      "**{}**: {} regressed, {} improved, {} unchanged, {} changed with no direction (metric × method and "
      "metric × group); {} config groups on both sides, {} paired runs; {} group{} only in {}, {} only in {}.\n",
      Regressed(c) ? "Regressed" : "No regression", count[Verdict::kRegressed], count[Verdict::kImproved],
      count[Verdict::kUnchanged], count[Verdict::kChanged], c.groups, c.pairs, c.only_base.size(),
      c.only_base.size() == 1 ? "" : "s", MarkdownCell(c.base_label), c.only_new.size(), MarkdownCell(c.new_label));
  for (const auto& [verdict, title] :
       {std::pair{Verdict::kRegressed, "Regressions"}, std::pair{Verdict::kImproved, "Improvements"}}) {
    if (count[verdict] == 0) continue;
    out += fmt::format(
        "\n### {}\n\n| Method / group | Metric | Base | New | Change | Threshold | Pairs | p |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n",
        title);
    for (const auto& m : c.changes) {
      if (m.verdict != verdict) continue;
      out +=
          fmt::format("| {} | {} | {} | {} | {} | {} | {} | {:.3g} |\n", MarkdownCell(Who(m)), MarkdownCell(m.metric),
                      Value(m, m.base_mean), Value(m, m.new_mean), Change(m), Threshold(m), m.pairs, m.p);
    }
  }
  out += fmt::format("\n{} unchanged.", count[Verdict::kUnchanged]);
  if (count[Verdict::kChanged] > 0) {
    out += fmt::format(" {} changed in a metric with no known direction (listed in the CSV and JSON).",
                       count[Verdict::kChanged]);
  }
  out += "\n";
  std::string notes;
  for (const auto& m : c.changes) {
    if (m.note.empty()) continue;
    notes += fmt::format("- {} · {}: {} — {}\n", MarkdownCell(Who(m)), MarkdownCell(m.metric), Change(m),
                         MarkdownCell(m.note));
  }
  if (!notes.empty()) out += "\n### Beyond the threshold, not confirmed by the test\n\n" + notes;
  const std::pair<const std::vector<GroupSummary>*, std::string> lists[] = {
      {&c.only_base, "Only in " + c.base_label},
      {&c.only_new, "Only in " + c.new_label},
      {&c.unpaired_base, "Seeds only in " + c.base_label + " (shared groups, unpaired)"},
      {&c.unpaired_new, "Seeds only in " + c.new_label + " (shared groups, unpaired)"}};
  for (const auto& [list, title] : lists) {
    if (list->empty()) continue;
    out += fmt::format("\n### {}\n\n", MarkdownCell(title));
    for (const auto& g : *list) out += fmt::format("- {} (seeds {})\n", MarkdownCell(g.label), SeedList(g.seeds));
  }
  out += fmt::format(
      "\nRuns paired by seed within each config group; Wilcoxon signed-rank test, two-sided, α = {:g}. A "
      "verdict needs the mean paired change beyond the metric's threshold and p < α (ratios: geometric "
      "mean of new / base).\n",
      c.options.alpha);
  return out;
}

std::string RenderCompareCsv(const Comparison& c) {
  std::string out =
      "scope,method,group,group_id,metric,direction,scale,threshold,groups,pairs,nonzero,base_mean,new_mean,"
      "change,p,min_p,verdict,note\n";
  for (const auto& m : c.changes) {
    out +=
        fmt::format("{},{},{},{},{},{},{},{:.12g},{},{},{},{:.12g},{:.12g},{:.12g},{:.6g},{:.6g},{},{}\n", m.scope,
                    CsvField(m.method), CsvField(m.group), m.group_id, CsvField(m.metric), ToString(m.rule.direction),
                    m.rule.scale == Scale::kRatio ? "ratio" : "absolute", m.rule.threshold, m.groups, m.pairs,
                    m.nonzero, m.base_mean, m.new_mean, m.change, m.p, m.min_p, ToString(m.verdict), CsvField(m.note));
  }
  // Groups of one side only: a row each, so that a script reading the CSV sees them too.
  for (const auto& [list, verdict] : {std::pair{&c.only_base, "only_base"}, std::pair{&c.only_new, "only_new"}}) {
    for (const auto& g : *list) {
      out += fmt::format("group,{},{},{},,,,,1,0,0,,,,,,{},{}\n", CsvField(g.method), CsvField(g.label), g.id, verdict,
                         CsvField("seeds " + SeedList(g.seeds)));
    }
  }
  return out;
}

nlohmann::json CompareJson(const Comparison& c) {
  nlohmann::json changes = nlohmann::json::array();
  for (const auto& m : c.changes) {
    changes.push_back({{"scope", m.scope},
                       {"method", m.method},
                       {"group", m.group},
                       {"group_id", m.group_id},
                       {"metric", m.metric},
                       {"direction", ToString(m.rule.direction)},
                       {"scale", m.rule.scale == Scale::kRatio ? "ratio" : "absolute"},
                       {"threshold", m.rule.threshold},
                       {"groups", m.groups},
                       {"pairs", m.pairs},
                       {"nonzero", m.nonzero},
                       {"base_mean", m.base_mean},
                       {"new_mean", m.new_mean},
                       {"change", m.change},
                       {"p", m.p},
                       {"min_p", m.min_p},
                       {"verdict", ToString(m.verdict)},
                       {"note", m.note}});
  }
  auto groups = [](const std::vector<GroupSummary>& list) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& g : list) {
      out.push_back({{"id", g.id}, {"method", g.method}, {"label", g.label}, {"seeds", g.seeds}});
    }
    return out;
  };
  return {{"base", c.base_label},
          {"new", c.new_label},
          {"alpha", c.options.alpha},
          {"thresholds", c.options.thresholds},
          {"regressed", Regressed(c)},
          {"groups", c.groups},
          {"pairs", c.pairs},
          {"changes", changes},
          {"only_base", groups(c.only_base)},
          {"only_new", groups(c.only_new)},
          {"unpaired_base", groups(c.unpaired_base)},
          {"unpaired_new", groups(c.unpaired_new)}};
}

}  // namespace tb
