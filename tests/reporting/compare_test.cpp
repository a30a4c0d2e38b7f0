#include "reporting/compare.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>

#include <gtest/gtest.h>

#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

// ---- The signed-rank test on hand-checked answers ----

TEST(CompareTest, SignedRankPKnownAnswers) {
  // Six positive differences, ranks 1..6: W+ = 21 is the largest of 2^6 equally likely sums, so
  // P(W+ >= 21) = 1/64 and the two-sided p is 2/64.
  EXPECT_DOUBLE_EQ(SignedRankP({1, 2, 3, 4, 5, 6}), 2.0 / 64);
  // Zero differences are dropped (Wilcoxon's method): the same answer.
  EXPECT_DOUBLE_EQ(SignedRankP({0, 1, 0, 2, 3, 4, 5, 6}), 2.0 / 64);
  // {1, 2, 3, -4, 5, 6}: W- = 4. Subsets of {1..6} with sum <= 4: {}, {1}, {2}, {3}, {4}, {1,2},
  // {1,3}: 7 of 64, so p = 2 * 7/64 (scipy.stats.wilcoxon gives statistic 4, p 0.21875).
  EXPECT_DOUBLE_EQ(SignedRankP({1, 2, 3, -4, 5, 6}), 14.0 / 64);
  EXPECT_DOUBLE_EQ(SignedRankP({-1, -2, -3, 4, -5, -6}), 14.0 / 64);  // symmetric in the sign
  // Ties: |d| = 1, 1, 2, 3 get mid-ranks 1.5, 1.5, 3, 4, doubled 3, 3, 6, 8; W+ doubled = 3+3+8
  // = 14. Of the 16 sign patterns the doubled sums >= 14 are {6,8}, {3a,3b,8}, {3a,6,8},
  // {3b,6,8}, {all} = 5, and <= 14 are 13, so p = 2 * 5/16.
  EXPECT_DOUBLE_EQ(SignedRankP({1, 1, -2, 3}), 10.0 / 16);
  // Ties found to a relative 1e-9: 0.03 - 0.02 and 0.05 - 0.04 differ in the last bits.
  EXPECT_DOUBLE_EQ(SignedRankP({0.03 - 0.02, 0.05 - 0.04, -0.02, 0.03}), 10.0 / 16);
  // Darwin's Zea mays differences (Fisher, The Design of Experiments), scipy.stats.wilcoxon's
  // documented example: W- = 10 + 14 = 24 and 676 of the 2^15 subsets of 1..15 sum to <= 24.
  EXPECT_DOUBLE_EQ(SignedRankP({6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75}), 2.0 * 676 / 32768);
  EXPECT_DOUBLE_EQ(SignedRankP({1, -1}), 1.0);
  EXPECT_DOUBLE_EQ(SignedRankP({}), 1.0);
  EXPECT_DOUBLE_EQ(SignedRankP({0, 0, 0}), 1.0);
  EXPECT_THROW(SignedRankP({1, std::nan("")}), std::invalid_argument);
}

TEST(CompareTest, MinimumSignedRankPIsTwoOverTwoToTheN) {
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(0), 1.0);
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(1), 1.0);
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(2), 0.5);
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(3), 0.25);
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(5), 0.0625);   // five pairs can never reach 0.05
  EXPECT_DOUBLE_EQ(MinimumSignedRankP(6), 0.03125);  // six can
  // It is the p of n differences of one sign, with or without ties.
  for (int n = 1; n <= 12; ++n) {
    std::vector<double> distinct, tied(n, 0.5);
    for (int i = 1; i <= n; ++i) distinct.push_back(i);
    EXPECT_DOUBLE_EQ(SignedRankP(distinct), MinimumSignedRankP(n)) << n;
    EXPECT_DOUBLE_EQ(SignedRankP(tied), MinimumSignedRankP(n)) << n;
  }
}

// Above 200 differences the normal approximation takes over; at the switch it agrees with the
// enumeration (0.0918636 by exact enumeration of this pattern at n = 201, computed offline).
TEST(CompareTest, SignedRankPNormalApproximationAgreesWithTheExactDistribution) {
  std::vector<double> d;
  for (int i = 1; i <= 201; ++i) d.push_back(i % 7 == 0 || i % 7 == 3 || i % 7 == 5 ? -i : i);
  EXPECT_NEAR(SignedRankP(d), 0.0918636, 2e-4);
  std::vector<double> positive, alternating;
  for (int i = 1; i <= 300; ++i) {
    positive.push_back(i);
    alternating.push_back(i % 2 ? i : -i);
  }
  EXPECT_LT(SignedRankP(positive), 1e-30);
  EXPECT_GT(SignedRankP(alternating), 0.5);
}

TEST(CompareTest, RulesCoverTheGlossary) {
  EXPECT_EQ(RuleFor("transfer_rate").direction, Direction::kHigherIsBetter);
  EXPECT_EQ(RuleFor("iid_acc_ft5").direction, Direction::kHigherIsBetter);
  EXPECT_EQ(RuleFor("fwt_task").direction, Direction::kHigherIsBetter);
  EXPECT_EQ(RuleFor("catchup_union_reached").direction, Direction::kHigherIsBetter);
  EXPECT_EQ(RuleFor("catchup_union").direction, Direction::kLowerIsBetter);
  EXPECT_EQ(RuleFor("forgetting_max_task").direction, Direction::kLowerIsBetter);
  EXPECT_DOUBLE_EQ(RuleFor("degradation").threshold, 1.0);  // percentage points
  EXPECT_EQ(RuleFor("time/method_seconds").scale, Scale::kRatio);
  EXPECT_DOUBLE_EQ(RuleFor("time/total_seconds").threshold, 1.10);
  for (const char* none : {"acc_before", "ood_acc", "topo/conv1/betti0", "direct_copy/row_change_norm", "union_acc"}) {
    EXPECT_EQ(RuleFor(none).direction, Direction::kNone) << none;
  }
}

// ---- Comparisons of stores built here ----

// The summary of method `method`, config group `group` (its lr), seed `seed`: distinct values,
// so that paired differences are not all ties.
using Summary = std::map<std::string, double>;
using Edit = std::function<void(const std::string& method, int group, int64_t seed, Summary& s)>;

void AddRun(RunStore& store, const std::string& suite, const std::string& method, int group, int64_t seed,
            const Summary& summary, const std::string& commit, int64_t threads) {
  NewRun r;
  r.suite = suite;
  r.method = method;
  r.dataset = "mnist";
  r.seed = seed;
  r.git_commit = commit;
  const double kLr[] = {0.1, 0.2, 0.3, 0.4, 0.5};
  r.config = {{"dataset", "mnist"}, {"method", method},   {"lr", kLr[group]},
              {"seed", seed},       {"threads", threads}, {"runner_version", 1}};
  const auto id = store.CreateRun(r);
  store.SetSummary(id, summary);
  store.FinishRun(id, RunStatus::kFinished, 0, "");
}

// finetune in 4 groups (lr 0.1 .. 0.4) and direct_copy in one, 3 seeds each: 15 runs.
void BuildStore(const std::string& path, const Edit& edit = {}, const std::string& commit = "",
                const std::string& suite = "nightly", int64_t threads = 1) {
  RunStore store(path);
  for (const auto& [method, groups] : {std::pair<std::string, int>{"finetune", 4}, {"direct_copy", 1}}) {
    for (int g = 0; g < groups; ++g) {
      for (int64_t seed = 0; seed < 3; ++seed) {
        Summary s = {{"transfer_rate", 0.80 + 0.02 * g + 0.003 * static_cast<double>(seed)},
                     {"preservation", 0.95 - 0.01 * g},
                     {"degradation", 1.5 + 0.1 * static_cast<double>(seed)},
                     {"time/total_seconds", 10.0 + g + 0.5 * static_cast<double>(seed)},
                     {"topo/conv1/betti0", 3.0 + static_cast<double>(seed)}};
        if (edit) edit(method, g, seed, s);
        AddRun(store, suite, method, g, seed, s, commit, threads);
      }
    }
  }
}

Comparison CompareFiles(const std::string& base, const std::string& next, const CompareOptions& options = {}) {
  return Compare(LoadSide(base, "", ""), LoadSide(next, "", ""), options);
}

const MetricChange& Find(const Comparison& c, const std::string& scope, const std::string& who,
                         const std::string& metric) {
  for (const auto& m : c.changes) {
    if (m.scope == scope && (scope == "method" ? m.method : m.group) == who && m.metric == metric) return m;
  }
  throw std::runtime_error("no change " + scope + " " + who + " " + metric);
}

TEST(CompareTest, IdenticalStoresCompareAsUnchanged) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", {}, "", "nightly", /*threads=*/8);  // another machine: same groups
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_FALSE(Regressed(c));
  EXPECT_EQ(c.groups, 5);
  EXPECT_EQ(c.pairs, 15);
  EXPECT_TRUE(c.only_base.empty() && c.only_new.empty() && c.unpaired_base.empty() && c.unpaired_new.empty());
  // 2 methods and 5 groups, 5 metrics each.
  ASSERT_EQ(c.changes.size(), 35u);
  for (const auto& m : c.changes) {
    EXPECT_EQ(m.verdict, Verdict::kUnchanged) << m.scope << " " << m.group << " " << m.metric;
    EXPECT_EQ(m.nonzero, 0);
    EXPECT_DOUBLE_EQ(m.p, 1.0);
    EXPECT_TRUE(m.note.empty());
  }
  const std::string md = RenderCompareMarkdown(c);
  EXPECT_NE(md.find("**No regression**"), std::string::npos) << md;
  EXPECT_NE(md.find("\n35 unchanged."), std::string::npos) << md;
  EXPECT_EQ(md.find("### Regressions"), std::string::npos) << md;
}

TEST(CompareTest, AFivePointDropAcrossAMethodsPairsIsARegression) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method == "finetune") s["transfer_rate"] -= 0.05 + 0.001 * static_cast<double>(3 * g + seed);
  });
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_TRUE(Regressed(c));
  const MetricChange& m = Find(c, "method", "finetune", "transfer_rate");
  EXPECT_EQ(m.verdict, Verdict::kRegressed);
  EXPECT_EQ(m.groups, 4);
  EXPECT_EQ(m.pairs, 12);
  EXPECT_EQ(m.nonzero, 12);
  EXPECT_NEAR(m.change, -0.0555, 1e-9);
  EXPECT_DOUBLE_EQ(m.p, 2.0 / 4096);
  // Each group alone has 3 pairs: beyond the threshold, but the test cannot say so.
  const MetricChange& g = Find(c, "group", "finetune (lr=0.1)", "transfer_rate");
  EXPECT_EQ(g.verdict, Verdict::kUnchanged);
  EXPECT_NE(g.note.find("3 pairs: the smallest p a signed-rank test can give is 0.25 > 0.05"), std::string::npos)
      << g.note;
  EXPECT_EQ(Find(c, "method", "direct_copy", "transfer_rate").verdict, Verdict::kUnchanged);
  EXPECT_EQ(Find(c, "method", "finetune", "preservation").verdict, Verdict::kUnchanged);

  const std::string md = RenderCompareMarkdown(c);
  EXPECT_NE(md.find("**Regressed**: 1 regressed, 0 improved"), std::string::npos) << md;
  EXPECT_NE(
      md.find("| finetune — all 4 groups | transfer_rate | 83.30% | 77.75% | -5.55 pts | 1 pts | 12 | 0.000488 |"),
      std::string::npos)
      << md;
  EXPECT_LT(md.find("### Regressions"), md.find(" unchanged.")) << md;
  EXPECT_NE(md.find("- finetune (lr=0.1) · transfer_rate: -5.10 pts — 3 pairs: the smallest p"), std::string::npos)
      << md;
  const std::string csv = RenderCompareCsv(c);
  EXPECT_NE(csv.find("\nmethod,finetune,,,transfer_rate,higher,absolute,0.01,4,12,12,0.833,0.7775,-0.0555,0.000488281,"
                     "0.000488281,regressed,\n"),
            std::string::npos)
      << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 36);  // header and 35 rows
  const nlohmann::json j = CompareJson(c);
  EXPECT_TRUE(j.at("regressed").get<bool>());
  EXPECT_EQ(j.at("changes").size(), 35u);

  // A larger threshold for the metric (or its rule's pattern) lets the drop pass; typos do not.
  CompareOptions loose;
  loose.thresholds["transfer_rate"] = 0.10;
  EXPECT_FALSE(Regressed(CompareFiles(dir / "base.db", dir / "new.db", loose)));
  loose.thresholds = {{"no_such_metric", 0.1}};
  EXPECT_THROW(CompareFiles(dir / "base.db", dir / "new.db", loose), BadInput);
  loose.thresholds = {{"time/*", 0.5}};  // a ratio below 1
  EXPECT_THROW(CompareFiles(dir / "base.db", dir / "new.db", loose), BadInput);
}

TEST(CompareTest, TheSameDropOnTwoSeedsOfOneGroupIsNotARegressionAndTheNoteSaysWhy) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method == "finetune" && g == 0 && seed < 2) s["transfer_rate"] -= 0.05 + 0.001 * static_cast<double>(seed);
  });
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_FALSE(Regressed(c));
  const MetricChange& g = Find(c, "group", "finetune (lr=0.1)", "transfer_rate");
  EXPECT_EQ(g.verdict, Verdict::kUnchanged);
  EXPECT_EQ(g.nonzero, 2);
  EXPECT_NEAR(g.change, -0.101 / 3, 1e-9);
  EXPECT_EQ(g.note, "3 pairs (2 differ): the smallest p a signed-rank test can give is 0.5 > 0.05");
  // Over the method's 12 pairs the mean drop is under a point.
  const MetricChange& m = Find(c, "method", "finetune", "transfer_rate");
  EXPECT_EQ(m.verdict, Verdict::kUnchanged);
  EXPECT_NEAR(m.change, -0.101 / 12, 1e-9);
  EXPECT_TRUE(m.note.empty());
  EXPECT_NE(RenderCompareMarkdown(c).find("### Beyond the threshold, not confirmed by the test"), std::string::npos);
}

TEST(CompareTest, AnImprovementIsNotARegression) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method == "finetune") s["transfer_rate"] += 0.05 + 0.001 * static_cast<double>(3 * g + seed);
  });
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_FALSE(Regressed(c));
  EXPECT_EQ(Find(c, "method", "finetune", "transfer_rate").verdict, Verdict::kImproved);
  const std::string md = RenderCompareMarkdown(c);
  EXPECT_NE(md.find("### Improvements"), std::string::npos) << md;
  EXPECT_EQ(md.find("### Regressions"), std::string::npos) << md;
}

TEST(CompareTest, ADropInALowerIsBetterMetricIsAnImprovementAndADiagnosticOnlyChanges) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method != "finetune") return;
    s["degradation"] -= 2.0 + 0.1 * static_cast<double>(3 * g + seed);
    s["topo/conv1/betti0"] += 1.0 + static_cast<double>(3 * g + seed);
  });
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_FALSE(Regressed(c));
  EXPECT_EQ(Find(c, "method", "finetune", "degradation").verdict, Verdict::kImproved);
  EXPECT_EQ(Find(c, "method", "finetune", "topo/conv1/betti0").verdict, Verdict::kChanged);
}

TEST(CompareTest, GroupsAndSeedsOnOneSideOnlyAreListed) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db");
  {
    RunStore base(dir / "base.db");
    AddRun(base, "nightly", "finetune", /*group=*/4, 0, {{"transfer_rate", 0.5}}, "", 1);  // lr=0.5
    RunStore next(dir / "new.db");
    AddRun(next, "nightly", "label_probe", 0, 0, {{"transfer_rate", 0.5}}, "", 1);
    AddRun(next, "nightly", "direct_copy", 0, /*seed=*/7, {{"transfer_rate", 0.5}}, "", 1);
  }
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_FALSE(Regressed(c));
  ASSERT_EQ(c.only_base.size(), 1u);
  EXPECT_EQ(c.only_base[0].label, "finetune (lr=0.5)");
  EXPECT_EQ(c.only_base[0].seeds, std::vector<int64_t>{0});
  ASSERT_EQ(c.only_new.size(), 1u);
  EXPECT_EQ(c.only_new[0].label, "label_probe");
  ASSERT_EQ(c.unpaired_new.size(), 1u);
  EXPECT_EQ(c.unpaired_new[0].label, "direct_copy");
  EXPECT_EQ(c.unpaired_new[0].seeds, std::vector<int64_t>{7});
  EXPECT_EQ(c.groups, 5);
  EXPECT_EQ(c.pairs, 15);
  const std::string md = RenderCompareMarkdown(c);
  EXPECT_NE(md.find("### Only in " + dir / "base.db" + "\n\n- finetune (lr=0.5) (seeds 0)\n"), std::string::npos) << md;
  EXPECT_NE(md.find("### Only in " + dir / "new.db" + "\n\n- label_probe (seeds 0)\n"), std::string::npos) << md;
  EXPECT_NE(md.find("- direct_copy (seeds 7)"), std::string::npos) << md;
  const std::string csv = RenderCompareCsv(c);
  EXPECT_NE(csv.find("\ngroup,finetune,finetune (lr=0.5),"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",only_base,seeds 0\n"), std::string::npos) << csv;
  EXPECT_EQ(CompareJson(c).at("only_new").at(0).at("label"), "label_probe");
}

TEST(CompareTest, ThirtyPercentSlowerIsARegressionAsARatio) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "new.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method == "finetune") s["time/total_seconds"] *= 1.3 + 0.001 * static_cast<double>(3 * g + seed);
  });
  const Comparison c = CompareFiles(dir / "base.db", dir / "new.db");
  EXPECT_TRUE(Regressed(c));
  const MetricChange& m = Find(c, "method", "finetune", "time/total_seconds");
  EXPECT_EQ(m.verdict, Verdict::kRegressed);
  EXPECT_EQ(m.rule.scale, Scale::kRatio);
  EXPECT_NEAR(m.change, 1.3055, 1e-3);  // the geometric mean of new / base
  EXPECT_EQ(Find(c, "method", "direct_copy", "time/total_seconds").verdict, Verdict::kUnchanged);
  EXPECT_NE(RenderCompareMarkdown(c).find("| finetune — all 4 groups | time/total_seconds |"), std::string::npos);
  // 5% slower is within the default 10%.
  BuildStore(dir / "slightly.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method == "finetune") s["time/total_seconds"] *= 1.05 + 0.001 * static_cast<double>(3 * g + seed);
  });
  EXPECT_FALSE(Regressed(CompareFiles(dir / "base.db", dir / "slightly.db")));
}

// ---- Loading a side ----

TEST(CompareTest, LoadSideReadsAFileASuiteOrACommitAndRefusesWhatMatchesNothing) {
  testing::TempDir dir;
  const std::string db = dir / "runs.db";
  BuildStore(db, {}, "abc1234def5678", "nightly");
  BuildStore(db, {}, "fedcba9876543", "other");  // same configs, another suite and commit
  {
    RunStore store(db);  // a rerun of one config by the same commit: the newest counts once
    AddRun(store, "nightly", "direct_copy", 0, 0, {{"transfer_rate", 0.1}}, "abc1234def5678", 1);
  }
  EXPECT_EQ(LoadSide(db, "", "").runs.size(), 15u);  // every suite: one run per config, the newest
  EXPECT_EQ(LoadSide(db, "", "nightly").runs.size(), 15u);
  EXPECT_EQ(LoadSide(db + ":other", "", "nightly").runs.front().suite, "other");
  const CompareSide suite = LoadSide("nightly", db, "");
  EXPECT_EQ(suite.runs.size(), 15u);
  EXPECT_EQ(suite.label, "nightly");
  ASSERT_EQ(suite.summaries.size(), 15u);
  EXPECT_DOUBLE_EQ(suite.summaries.at(suite.runs.front().id).at("transfer_rate"), 0.1);
  const CompareSide commit = LoadSide("abc1234", db, "");
  EXPECT_EQ(commit.runs.size(), 15u);
  for (const auto& r : commit.runs) EXPECT_EQ(r.git_commit, "abc1234def5678");
  EXPECT_EQ(LoadSide("commit:FEDCBA9", db, "").runs.front().git_commit, "fedcba9876543");
  EXPECT_EQ(LoadSide("suite:other", db, "").runs.size(), 15u);

  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const BadInput& e) {
      return std::string(e.what());
    }
    return std::string("no BadInput");
  };
  EXPECT_NE(message([&] { LoadSide("nope", db, ""); }).find("suite 'nope' has no finished runs"), std::string::npos);
  EXPECT_NE(message([&] { LoadSide("nope", db, ""); }).find("suites there: nightly, other"), std::string::npos);
  EXPECT_NE(message([&] { LoadSide("0000000", db, ""); }).find("commit '0000000': no finished runs"),
            std::string::npos);
  // The suite filter applies to a commit: abc1234 made no run of suite "other".
  EXPECT_NE(message([&] { LoadSide("abc1234", db, "other"); }).find("no finished runs of suite 'other'"),
            std::string::npos);
  EXPECT_NE(message([&] { LoadSide("commit:abc", db, ""); }).find("7 to 40 hex digits"), std::string::npos);
  EXPECT_NE(message([&] { LoadSide(db + ":nope", "", ""); }).find("suite 'nope'"), std::string::npos);
  const std::string missing = dir / "missing.db";
  EXPECT_NE(message([&] { LoadSide(missing, "", ""); }).find(missing + " does not exist"), std::string::npos);
  EXPECT_NE(message([&] { LoadSide("nightly", missing, ""); }).find(missing + " does not exist"), std::string::npos);
  EXPECT_NE(message([&] { LoadSide(missing + ":nightly", "", ""); }).find("does not exist"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(missing));
  {
    RunStore store(db);
    AddRun(store, "nightly", "direct_copy", 0, 9, {{"transfer_rate", 0.1}}, "abc1234ffff", 1);
  }
  EXPECT_NE(message([&] { LoadSide("abc1234", db, ""); }).find("is ambiguous"), std::string::npos);
  EXPECT_EQ(LoadSide("abc1234d", db, "").runs.size(), 15u);
}

// Review: a metric NEW stopped reporting (NaN or gone) is a regression, not "unchanged"; no
// pairs at all is bad input, not a pass; a significant shift whose mean points the other way
// gets no verdict.
TEST(CompareTest, LostMetricsNoPairsAndDisagreeingSignsAreNotPasses) {
  testing::TempDir dir;
  BuildStore(dir / "base.db");
  BuildStore(dir / "nan.db", [](const std::string& method, int, int64_t, Summary& s) {
    if (method == "finetune") {
      s["transfer_rate"] = std::nan("");
      s.erase("preservation");
    }
  });
  const Comparison lost = CompareFiles(dir / "base.db", dir / "nan.db");
  EXPECT_TRUE(Regressed(lost));
  int regressed = 0;
  for (const auto& m : lost.changes) {
    if (m.verdict == Verdict::kRegressed) {
      ++regressed;
      EXPECT_EQ(m.method, "finetune");
      EXPECT_EQ(m.pairs, 12);
      EXPECT_NE(m.note.find("NaN or missing in NEW"), std::string::npos) << m.note;
    }
  }
  EXPECT_EQ(regressed, 2);  // transfer_rate and preservation
  // Nothing in common: every group of NEW has another lr.
  RunStore other(dir / "other.db");
  for (int64_t seed = 0; seed < 3; ++seed) AddRun(other, "nightly", "finetune", 4, seed, {{"transfer_rate", 0.5}}, "", 1);
  EXPECT_THROW(CompareFiles(dir / "base.db", dir / "other.db"), BadInput);
  // 11 of 12 finetune pairs 1-2 points worse, one 40 points better: the ranks say worse, the
  // mean says better; no verdict either way, and the note says why.
  BuildStore(dir / "mixed.db", [](const std::string& method, int g, int64_t seed, Summary& s) {
    if (method != "finetune") return;
    s["transfer_rate"] += g == 0 && seed == 0 ? 0.4 : -0.01 - 0.001 * static_cast<double>(3 * g + seed);
  });
  const Comparison mixed = CompareFiles(dir / "base.db", dir / "mixed.db");
  const MetricChange& m = Find(mixed, "method", "finetune", "transfer_rate");
  EXPECT_GT(m.change, 0.01);
  EXPECT_LT(m.p, 0.05);
  EXPECT_EQ(m.verdict, Verdict::kUnchanged);
  EXPECT_NE(m.note.find("disagree in direction"), std::string::npos) << m.note;
}

}  // namespace
}  // namespace tb
