// The surgery suite: known answers for its math, and every method on a tiny real scenario.
#include <gtest/gtest.h>

#include "experiments/cli/runner.h"
#include "experiments/surgery/linear_algebra.h"
#include "experiments/surgery/sae.h"
#include "store/errors.h"
#include "store/hash.h"
#include "tests/test_util.h"

namespace tb {
namespace {

TEST(SurgeryMathTest, ProcrustesRecoversAPlantedRotation) {
  torch::manual_seed(1);
  auto q = std::get<0>(torch::linalg_qr(torch::randn({24, 24}, torch::kFloat64)));
  auto source = torch::randn({60, 24}, torch::kFloat64);  // enough points to pin R down
  auto target = source.mm(q);
  auto r = Procrustes(source, target);
  EXPECT_LT((r - q).abs().max().item<double>(), 1e-5);
  EXPECT_LT(AlignmentError(source, r, target), 1e-5);
}

TEST(SurgeryMathTest, FreeDirectionsAreOrthonormalAndOrthogonalToTheCentroids) {
  torch::manual_seed(2);
  auto used = torch::rand({4, 24});
  auto f = FreeDirections(used, 8);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{24, 8}));
  EXPECT_LT((f.t().mm(f) - torch::eye(8)).abs().max().item<double>(), 1e-5);
  EXPECT_LT(f.t().mm(used.t()).abs().max().item<double>(), 1e-5);
}

TEST(SurgeryMathTest, StitchRecoversAPlantedMapAndTransplantsAHeadRow) {
  torch::manual_seed(3);
  auto from = torch::randn({500, 16}, torch::kFloat64);
  auto m = torch::randn({16, 12}, torch::kFloat64);
  auto m0 = torch::randn({12}, torch::kFloat64);
  auto to = from.mm(m) + m0;
  Stitch s = FitStitch(from, to, /*ridge=*/0);
  EXPECT_LT((s.weight - m).abs().max().item<double>(), 1e-4);
  EXPECT_LT((s.bias - m0).abs().max().item<double>(), 1e-4);
  // B's class-4 logit on B's features equals A''s on A's features through the stitched row.
  auto row_b = torch::randn({12}, torch::kFloat64);
  auto bias_b = torch::randn({}, torch::kFloat64);
  auto [row_a, bias_a] = StitchHeadRow(s, row_b, bias_b);
  auto logit_b = to.mv(row_b) + bias_b;
  auto logit_a = from.mv(row_a) + bias_a;
  EXPECT_LT((logit_a - logit_b).abs().max().item<double>(), 1e-4);
}

TEST(SurgeryMathTest, CalibrationShiftIsTheLargestThatKeepsTheThreshold) {
  // Class 2 is the transfer class; samples of classes 0 and 1 with margins 1, 2, 3, 4 over it.
  auto logits = torch::tensor({{5.0, 0.0, 4.0}, {0.0, 5.0, 3.0}, {5.0, 0.0, 2.0}, {0.0, 5.0, 1.0}});
  auto labels = torch::tensor(std::vector<int64_t>{0, 1, 0, 1});
  // Keep 75% of 4 correct: one sample may flip; the second flips at a shift of 2.
  EXPECT_NEAR(CalibrationShift(logits, labels, {2}, 4, 0.75, 100), 2.0, 1e-5);
  EXPECT_NEAR(CalibrationShift(logits, labels, {2}, 4, 1.0, 100), 1.0, 1e-5);
  EXPECT_NEAR(CalibrationShift(logits, labels, {2}, 4, 0.0, 100), 100.0, 1e-5);
  // Already below: the shift is negative, enough to win back what is needed.
  auto taken = torch::tensor({{5.0, 0.0, 6.0}, {0.0, 5.0, 3.0}});
  auto taken_labels = torch::tensor(std::vector<int64_t>{0, 1});
  EXPECT_NEAR(CalibrationShift(taken, taken_labels, {2}, 2, 1.0, 100), -1.0, 1e-5);
}

// Review 19.3: calibration acted on the first transfer class only. With classes 2 and 3 shifted
// alike, each sample is lost where its best transfer logit overtakes its label's.
TEST(SurgeryMathTest, CalibrationShiftCoversEveryTransferClass) {
  // Margins of the best transfer logit: 1 (class 3), 2 (class 2), 3 (class 3), 4 (class 2).
  auto logits = torch::tensor({{5.0, 0.0, 0.0, 4.0}, {0.0, 5.0, 3.0, 1.0}, {5.0, 0.0, 1.0, 2.0}, {0.0, 5.0, 1.0, 0.0}});
  auto labels = torch::tensor(std::vector<int64_t>{0, 1, 0, 1});
  EXPECT_NEAR(CalibrationShift(logits, labels, {2, 3}, 4, 0.75, 100), 2.0, 1e-5);
  EXPECT_NEAR(CalibrationShift(logits, labels, {3, 2}, 4, 0.75, 100), 2.0, 1e-5);
  EXPECT_NEAR(CalibrationShift(logits, labels, {2, 3}, 4, 0.5, 100), 3.0, 1e-5);
  // Class 3 alone: margins 1, 4, 3, 5, so keeping 3 of 4 allows a shift just under 3.
  EXPECT_NEAR(CalibrationShift(logits, labels, {3}, 4, 0.75, 100), 3.0, 1e-5);
}

TEST(SurgeryMathTest, SaeReconstructionLossFalls) {
  torch::manual_seed(4);
  auto x = torch::relu(torch::randn({400, 32}));
  SparseAutoencoder sae(32, 8);
  SaeOptions o;
  o.epochs = 10;
  auto losses = TrainSae(sae, x, o, 1);
  ASSERT_EQ(losses.size(), 10u);
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << ::testing::PrintToString(losses);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << ::testing::PrintToString(losses);
  auto c = ClassCentroids(sae->Encode(x), torch::tensor(std::vector<int64_t>(400, 3)), {3});
  EXPECT_EQ(c.sizes(), (std::vector<int64_t>{1, 8}));
}

class SurgeryRunTest : public ::testing::Test {
 protected:
  RunOutcome Execute(const std::string& method, std::vector<std::pair<std::string, nlohmann::json>> extra = {}) {
    RunRequest r;
    r.method = method;
    r.settings = {{"dataset", "mnist"}, {"data.train_per_class", 60}, {"train.epochs", 2}, {"arch", "verydeep"},
                  {"threads", 1}};
    r.settings.insert(r.settings.end(), extra.begin(), extra.end());
    PreparedRun p = PrepareRun(r);
    return ExecuteRun(p, ResultPaths{dir_.path()}, ExecuteOptions{});
  }
  std::string ZooDigest() {
    std::string all;
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/zoo")) {
      if (e.is_regular_file()) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) all += Sha256File(f);
    return all;
  }
  int64_t DerivedFiles(const std::string& dir) {
    int64_t n = 0;
    if (!std::filesystem::exists(dir + "/derived")) return 0;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/derived")) n += e.is_regular_file() ? 1 : 0;
    return n;
  }
  testing::TempDir dir_;
};

// A's and B's SAEs are derived from zoo models alone: fitted once, then loaded by every head
// variant and control of the same A, giving bit-for-bit what fitting them again gives.
TEST_F(SurgeryRunTest, DerivedSaesAreCachedAndIdenticalToFreshOnes) {
  const std::vector<std::pair<std::string, nlohmann::json>> quick = {{"sae_epochs", 3}, {"steps", 10}};
  auto with_head = [&](const std::string& head) {
    auto settings = quick;
    settings.emplace_back("head", head);
    return Execute("vector_space_alignment", settings);
  };
  RunOutcome keep = with_head("keep");
  ASSERT_EQ(keep.status, RunStatus::kFinished) << keep.error;
  EXPECT_EQ(DerivedFiles(dir_.path()), 2);  // A's and B's
  RunOutcome copy = with_head("copy_row");  // both SAEs from the cache
  ASSERT_EQ(copy.status, RunStatus::kFinished) << copy.error;
  EXPECT_EQ(DerivedFiles(dir_.path()), 2);
  EXPECT_EQ(copy.summary.at("vector_space_alignment/a_sae_loss_last"), keep.summary.at("vector_space_alignment/a_sae_loss_last"));
  // The same run with nothing cached, in another results directory.
  testing::TempDir fresh;
  RunRequest r;
  r.method = "vector_space_alignment";
  r.settings = {{"dataset", "mnist"}, {"data.train_per_class", 60}, {"train.epochs", 2}, {"arch", "verydeep"},
                {"threads", 1}, {"sae_epochs", 3}, {"steps", 10}, {"head", "copy_row"}};
  PreparedRun p = PrepareRun(r);
  RunOutcome alone = ExecuteRun(p, ResultPaths{fresh.path()}, ExecuteOptions{});
  ASSERT_EQ(alone.status, RunStatus::kFinished) << alone.error;
  for (const auto& [k, v] : alone.summary) {
    if (k.rfind("time/", 0) == 0 || k.rfind("zoo/", 0) == 0 || std::isnan(v)) continue;
    EXPECT_EQ(copy.summary.at(k), v) << k;
  }
}

// Each method: it runs, its metrics are finite and in range, the zoo's A and B are untouched,
// and a second run gives identical metrics.
TEST_F(SurgeryRunTest, EveryMethodRunsInRangeAndDeterministically) {
  const std::vector<std::pair<std::string, std::vector<std::pair<std::string, nlohmann::json>>>> cases = {
      {"linear_stitch", {}},
      {"label_probe", {{"steps", 30}}},
      {"cascade_transplant", {{"k", 8}}},
      {"concept_injection", {{"sae_epochs", 3}, {"steps", 10}}},
      {"preserved_concept_injection", {{"sae_epochs", 3}, {"steps", 10}, {"head", "stitch_row"}}},
      {"vector_space_alignment", {{"sae_epochs", 3}, {"steps", 10}, {"head", "copy_row"}}},
      {"cross_arch_alignment", {{"sae_epochs", 3}, {"steps", 10}, {"aligner_epochs", 3}, {"arch_a", "wide"}}},
  };
  for (const auto& [method, extra] : cases) {
    RunOutcome first = Execute(method, extra);
    ASSERT_EQ(first.status, RunStatus::kFinished) << method << ": " << first.error;
    const std::string zoo = ZooDigest();
    RunOutcome second = Execute(method, extra);
    ASSERT_EQ(second.status, RunStatus::kFinished) << method << ": " << second.error;
    EXPECT_EQ(ZooDigest(), zoo) << method;
    for (const char* key : {"transfer_rate", "acc_after", "false_transfer", "joint_acc"}) {
      const double v = first.summary.at(key);
      EXPECT_TRUE(v >= 0 && v <= 1) << method << " " << key << " " << v;
    }
    EXPECT_TRUE(std::isfinite(first.summary.at("preservation"))) << method;
    for (const auto& [k, v] : first.summary) {
      if (k.rfind("time/", 0) == 0 || k.rfind("zoo/", 0) == 0) continue;
      if (std::isnan(v)) continue;
      EXPECT_EQ(second.summary.at(k), v) << method << " " << k;
    }
  }
}

// Head-editing methods change only what they name: linear_stitch only A's class-4 row and bias.
TEST_F(SurgeryRunTest, LinearStitchChangesOnlyTheTransferRow) {
  RunOutcome out = Execute("linear_stitch");
  ASSERT_EQ(out.status, RunStatus::kFinished) << out.error;
  // Only the class-4 row changed, so an S_A sample can only be lost to class 4.
  EXPECT_LE(out.summary.at("acc_after"), out.summary.at("acc_before"));
  EXPECT_LE(out.summary.at("acc_before") - out.summary.at("acc_after"), out.summary.at("false_transfer") + 1e-12);
}

TEST_F(SurgeryRunTest, CalibrationKeepsPreservationOnValidation) {
  RunOutcome out = Execute("linear_stitch", {{"calibrate", "control"}});
  ASSERT_EQ(out.status, RunStatus::kFinished) << out.error;
  EXPECT_TRUE(out.summary.count("calibration/shift"));
  EXPECT_GE(out.summary.at("calibration/val_preservation"), 0.97);
}

TEST_F(SurgeryRunTest, ShapeProblemsAreBadInputBeforeAnyTraining) {
  auto error = [&](const std::string& method, std::vector<std::pair<std::string, nlohmann::json>> extra) {
    RunRequest r;
    r.method = method;
    r.settings = extra;
    try {
      PrepareRun(r);
    } catch (const BadInput& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error("cascade_transplant", {{"dataset", "mnist"}, {"arch_a", "wide"}, {"arch_b", "deep"}}),
            "cascade_transplant: target wide has 2 hidden layers and source deep has 3; the cascade needs equal depths");
  EXPECT_EQ(error("cascade_transplant", {{"dataset", "mnist"}, {"arch", "cnn2464"}}),
            "cascade_transplant: needs an MLP; cnn2464 has layer conv1");
  EXPECT_NE(error("vector_space_alignment", {{"dataset", "mnist"}, {"arch_a", "superwide"}, {"head", "copy_row"}})
                .find("head=copy_row: target superwide has 2048"),
            std::string::npos);
  EXPECT_EQ(error("vector_space_alignment", {{"dataset", "mnist"}, {"classes_a", "0,1"}}),
            "vector_space_alignment: classes_a and classes_b share no class to align on");
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/runs.db"));
}

}  // namespace
}  // namespace tb
