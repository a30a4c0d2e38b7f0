#include "reporting/surgery.h"

#include <gtest/gtest.h>

namespace tb {
namespace {

void AddRun(RunStore& store, const std::string& method, const std::string& pair, const std::string& head,
            const std::string& source, int64_t seed, double transfer, double preservation, int64_t epochs = 5,
            const std::string& concept_source = "") {
  NewRun r;
  r.suite = "nightly";
  r.method = method;
  r.dataset = "mnist";
  r.seed = seed;
  const auto colon = pair.find(':');
  r.config = {{"dataset", "mnist"}, {"method", method}, {"arch_b", pair.substr(0, colon)},
              {"arch_a", pair.substr(colon + 1)}, {"seed", seed}, {"source", source}, {"calibrate", "none"},
              {"train.epochs", epochs}};
  if (!head.empty()) r.config["head"] = head;
  // As a stored config has it: every option of the method, its own control's at the default.
  if (method == "vector_space_alignment" || method == "cross_arch_alignment") {
    r.config["concept_source"] = concept_source.empty() ? "source" : concept_source;
  } else if (!concept_source.empty()) {
    r.config["concept_source"] = concept_source;
  }
  const auto id = store.CreateRun(r);
  store.SetSummary(id, {{"transfer_rate", transfer}, {"preservation", preservation}});
  store.FinishRun(id, RunStatus::kFinished, 0, "");
}

// The run-level options the label_probe reference is matched on (as the CLI declares them).
DeclaredOptions Declared() {
  DeclaredOptions d;
  d.run = {{"dataset", "fashion-mnist"}, {"data.train_per_class", 0}, {"train.epochs", 5}, {"source", "trained"},
           {"calibrate", "none"}, {"arch_a", "wide"}, {"arch_b", "wide"}, {"seed", 0}};
  return d;
}

const ClaimRow& Find(const SurgeryTables& t, const std::string& prefix) {
  for (const auto& c : t.claims) {
    if (c.claim.rfind(prefix, 0) == 0) return c;
  }
  throw std::runtime_error("no claim " + prefix);
}

TEST(SurgeryReportTest, VerdictsFollowTheReadingsAndTheReferences) {
  RunStore store(":memory:");
  for (int64_t s = 0; s < 3; ++s) {
    AddRun(store, "direct_copy", "wide:wide", "", "trained", s, 0.0, 1.0);
    AddRun(store, "cascade_transplant", "wide:wide", "", "trained", s, 0.02, 1.0);
    AddRun(store, "vector_space_alignment", "wide:wide", "keep", "trained", s, 0.0, 1.0);
    AddRun(store, "vector_space_alignment", "wide:wide", "copy_row", "trained", s, 0.86 + 0.01 * s, 0.98);
    AddRun(store, "vector_space_alignment", "wide:wide", "keep", "random", s, 0.0, 1.0);
    AddRun(store, "vector_space_alignment", "wide:wide", "copy_row", "random", s, 0.1, 0.99);
    // The method's own control: not part of the literal reading.
    AddRun(store, "vector_space_alignment", "wide:wide", "keep", "trained", s, 0.9, 0.2, 5, "random");
    AddRun(store, "vector_space_alignment", "wide:wide", "copy_row", "trained", s, 0.84, 0.97, 5, "random");
    AddRun(store, "concept_injection", "wide:wide", "keep", "trained", s, 1.0, 0.0);
    AddRun(store, "concept_injection", "wide:wide", "keep", "random", s, 1.0, 0.0);
    AddRun(store, "label_probe", "wide:wide", "", "trained", s, 0.83, 0.93);
  }
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  EXPECT_EQ(Find(t, "Direct head-row copy").verdict, "reproduced");
  EXPECT_EQ(Find(t, "Cascade transplant").verdict, "not reproduced");
  const auto& vsa = Find(t, "Vector-space alignment, wide");
  EXPECT_EQ(vsa.verdict, "only under head=copy_row; control matches it: not transfer");
  EXPECT_EQ(vsa.readings[1], "87.0 ± 1.0 / 98.0 ± 0.0 (n=3)");
  EXPECT_EQ(vsa.readings[0], "0.0 ± 0.0 / 100.0 ± 0.0 (n=3)");
  EXPECT_EQ(vsa.probe, "83.0 ± 0.0 / 93.0 ± 0.0 (n=3)");
  // The controls stand under the agreeing reading's head.
  EXPECT_EQ(vsa.control,
            "head=copy_row: B random: 10.0 ± 0.0 / 99.0 ± 0.0 (n=3); concept random: 84.0 ± 0.0 / 97.0 ± 0.0 (n=3)");
  // ... and the random concept does as well as B's: not transfer.
  const auto& all = Find(t, "Vector-space alignment (all");
  EXPECT_EQ(all.verdict, "not reproduced; control matches it: not transfer");
  // 100% / 0% reproduced, but the random source does the same: not transfer.
  EXPECT_EQ(Find(t, "SAE concept injection").verdict, "reproduced; control matches it: not transfer");
  EXPECT_EQ(Find(t, "Cross-architecture").verdict, "not measured");
  EXPECT_TRUE(HasMeasurements(t));
}

// A control run on fewer pairs than the claim is set against the reading on its own pairs.
TEST(SurgeryReportTest, ControlsAreComparedOnThePairsTheyCover) {
  RunStore store(":memory:");
  for (int64_t s = 0; s < 3; ++s) {
    AddRun(store, "vector_space_alignment", "wide:wide", "keep", "trained", s, 0.87, 0.98);
    AddRun(store, "vector_space_alignment", "deep:deep", "keep", "trained", s, 1.0, 0.98);
    AddRun(store, "vector_space_alignment", "wide:wide", "keep", "trained", s, 0.80, 0.98, 5, "random");
  }
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  const auto& all = Find(t, "Vector-space alignment (all");
  EXPECT_EQ(all.readings[0], "93.5 ± 7.1 / 98.0 ± 0.0 (n=6)");
  EXPECT_EQ(all.control, "head=keep: concept random: 80.0 ± 0.0 / 98.0 ± 0.0 (n=3) on wide → wide");
  // 80.0 against wide → wide's 87.0 (not the 93.5 of both pairs): within 10 points.
  EXPECT_EQ(all.verdict, "not reproduced; control matches it: not transfer");
  // Nothing under any head: not measured, and no note on references.
  EXPECT_EQ(Find(t, "Cross-architecture").verdict, "not measured");
}

// One lucky seed among five does not make a mean agree: the tolerance is two standard errors.
TEST(SurgeryReportTest, AgreementIsJudgedOnTheMeanNotOnTheSpread) {
  RunStore store(":memory:");
  const double transfer[] = {0.05, 0.05, 0.05, 0.05, 0.72};  // mean 18.4, std 30.0
  for (int64_t s = 0; s < 5; ++s) {
    AddRun(store, "vector_space_alignment", "wide:wide", "stitch_row", "trained", s, transfer[s], 0.99);
  }
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  // 49.6 is 31.2 points away; 2 std (60) would call it reproduced, 2 standard errors (26.8) do not.
  EXPECT_EQ(Find(t, "Vector-space alignment (all").verdict, "not reproduced");
  EXPECT_EQ(Find(t, "Vector-space alignment, wide").verdict, "not reproduced");
}

// Review 19.1: the claims pooled runs the main table keeps apart (two configs that differ in
// data.train_per_class, averaged as if they were two seeds).
TEST(SurgeryReportTest, ClaimsStandOnOneConfigGroupAndSayWhichWhenSeveralQualify) {
  RunStore store(":memory:");
  auto add = [&](const std::string& method, int64_t per_class, double transfer, double preservation) {
    NewRun r;
    r.suite = "nightly";
    r.method = method;
    r.dataset = "mnist";
    r.config = {{"dataset", "mnist"}, {"method", method}, {"arch_b", "wide"}, {"arch_a", "wide"}, {"seed", 0},
                {"source", "trained"}, {"calibrate", "none"}, {"train.epochs", 5},
                {"data.train_per_class", per_class}};
    const auto id = store.CreateRun(r);
    store.SetSummary(id, {{"transfer_rate", transfer}, {"preservation", preservation}});
    store.FinishRun(id, RunStatus::kFinished, 0, "");
  };
  add("label_probe", 50, 0.969, 0.765);
  add("label_probe", 100, 0.883, 0.841);
  add("direct_copy", 50, 0.0, 1.0);
  add("direct_copy", 100, 0.3, 1.0);
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  const auto& copy = Find(t, "Direct head-row copy");
  // Neither is the unnamed row (an even split with no declared value among them); the first by
  // hash stands, alone, and the cell says there is another.
  EXPECT_NE(copy.readings[0].find("(n=1; on data.train_per_class="), std::string::npos) << copy.readings[0];
  EXPECT_NE(copy.readings[0].find("; 1 other config not pooled)"), std::string::npos) << copy.readings[0];
  EXPECT_EQ(copy.readings[0].find("±"), std::string::npos) << copy.readings[0];  // never a std over one seed
  // label_probe is set against the same data as the reading it stands beside.
  const bool on_50 = copy.readings[0].find("data.train_per_class=50") != std::string::npos;
  EXPECT_EQ(copy.probe, on_50 ? "96.9 / 76.5 (n=1)" : "88.3 / 84.1 (n=1)") << copy.probe;
  EXPECT_EQ(copy.verdict, on_50 ? "reproduced" : "not reproduced; label_probe does as well");
  const std::string md = RenderSurgeryMarkdown(t);
  EXPECT_EQ(md.find("92.6"), std::string::npos) << md;  // the pooled mean of the two label_probe configs
}

// Review of 19.1: a depth row's columns come from one config, never one column from each.
TEST(SurgeryReportTest, ADepthRowStandsOnOneConfigAcrossItsColumns) {
  RunStore store(":memory:");
  auto add = [&](int64_t per_class, int64_t epochs, double transfer) {
    NewRun r;
    r.suite = "nightly";
    r.method = "linear_stitch";
    r.config = {{"dataset", "mnist"}, {"method", "linear_stitch"}, {"arch_b", "wide"}, {"arch_a", "wide"}, {"seed", 0},
                {"source", "trained"}, {"calibrate", "none"}, {"train.epochs", epochs},
                {"data.train_per_class", per_class}};
    const auto id = store.CreateRun(r);
    store.SetSummary(id, {{"transfer_rate", transfer}, {"preservation", 1.0}});
    store.FinishRun(id, RunStatus::kFinished, 0, "");
  };
  add(0, 1, 0.9);
  add(0, 30, 0.5);
  add(0, 8, 0.7);
  add(50, 1, 0.1);  // another config, at one depth only: never pooled, never mixed in
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  ASSERT_EQ(t.depth.size(), 1u);
  EXPECT_EQ(t.depth[0].alternatives, 1);
  EXPECT_DOUBLE_EQ(t.depth[0].transfer[0].mean, 0.9);
  EXPECT_EQ(t.depth[0].transfer[0].n, 1);
  EXPECT_DOUBLE_EQ(t.depth[0].transfer[3].mean, 0.7);
  const std::string md = RenderSurgeryMarkdown(t);
  EXPECT_NE(md.find("| linear_stitch * | 90.0 / 100.0 | – | – | 70.0 / 100.0 | – | 50.0 / 100.0 |"), std::string::npos)
      << md;
}

TEST(SurgeryReportTest, DepthTableHasOneColumnPerEpochCount) {
  RunStore store(":memory:");
  AddRun(store, "linear_stitch", "wide:wide", "", "trained", 0, 0.9, 0.99, /*epochs=*/1);
  AddRun(store, "linear_stitch", "wide:wide", "", "trained", 0, 0.5, 0.99, /*epochs=*/30);
  SurgeryTables t = BuildSurgeryTables(store, "nightly", "mnist", Declared());
  ASSERT_EQ(t.depth.size(), 1u);
  EXPECT_EQ(t.depth[0].method, "linear_stitch");
  EXPECT_DOUBLE_EQ(t.depth[0].transfer[0].mean, 0.9);
  EXPECT_EQ(t.depth[0].transfer[1].n, 0);
  EXPECT_DOUBLE_EQ(t.depth[0].transfer[5].mean, 0.5);
  const std::string md = RenderSurgeryMarkdown(t);
  EXPECT_NE(md.find("| linear_stitch | 90.0 / 99.0 | – | – | – | – | 50.0 / 99.0 |"), std::string::npos) << md;
}

}  // namespace
}  // namespace tb
