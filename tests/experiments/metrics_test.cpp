#include <gtest/gtest.h>

#include "experiments/metrics/continual.h"
#include "experiments/metrics/transfer.h"

namespace tb {
namespace {

torch::Tensor T(std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); }

// Hand-built case: S_A = {0, 1}, S_B = {1, 2}, T = {2}.
// labels   0 0 1 1 2 2 2 2
// before   0 0 1 0 1 1 1 1   -> acc_before on S_A: 3/4
// after    0 2 1 1 2 2 0 1   -> acc_after on S_A: 3/4 (sample 1 lost, sample 3 gained)
TEST(TransferMetricsTest, HandComputedCase) {
  auto labels = T({0, 0, 1, 1, 2, 2, 2, 2});
  auto before = T({0, 0, 1, 0, 1, 1, 1, 1});
  auto after = T({0, 2, 1, 1, 2, 2, 0, 1});
  MetricMap m = TransferMetrics(before, after, labels, ScenarioClasses{{0, 1}, {1, 2}, {2}});
  EXPECT_DOUBLE_EQ(m["transfer_rate"], 0.5);     // 2 of 4 class-2 samples
  EXPECT_DOUBLE_EQ(m["acc_before"], 0.75);
  EXPECT_DOUBLE_EQ(m["acc_after"], 0.75);
  EXPECT_DOUBLE_EQ(m["preservation"], 1.0);
  EXPECT_DOUBLE_EQ(m["degradation"], 0.0);
  EXPECT_DOUBLE_EQ(m["false_transfer"], 0.25);   // sample 1 (a 0) now predicted 2
  EXPECT_DOUBLE_EQ(m["joint_acc"], 5.0 / 8.0);   // 3 on S_A + 2 on T
  EXPECT_DOUBLE_EQ(m["acc_class_0"], 0.5);
  EXPECT_DOUBLE_EQ(m["acc_class_1"], 1.0);
  EXPECT_DOUBLE_EQ(m["acc_class_2"], 0.5);
}

// A model that answers the transfer class for everything must not look good.
TEST(TransferMetricsTest, AlwaysPredictingTheNewClass) {
  auto labels = T({0, 1, 2, 2});
  auto before = T({0, 1, 0, 1});
  auto after = T({2, 2, 2, 2});
  MetricMap m = TransferMetrics(before, after, labels, ScenarioClasses{{0, 1}, {1, 2}, {2}});
  EXPECT_DOUBLE_EQ(m["transfer_rate"], 1.0);
  EXPECT_DOUBLE_EQ(m["preservation"], 0.0);
  EXPECT_DOUBLE_EQ(m["degradation"], 100.0);
  EXPECT_DOUBLE_EQ(m["false_transfer"], 1.0);
  EXPECT_DOUBLE_EQ(m["joint_acc"], 0.5);
}

TEST(TransferMetricsTest, AccuracyOfAbsentClassesIsNaN) {
  EXPECT_TRUE(std::isnan(Accuracy(T({0}), T({0}), {5})));
}

// R[i][j]: accuracy on task j after training on task i.
const AccuracyMatrix kR = {{0.9, 0.1, 0.1},
                           {0.7, 0.8, 0.2},
                           {0.6, 0.5, 0.9}};

TEST(ContinualMetricsTest, HandComputed3x3) {
  // forgetting_max: j=0: max(0.9, 0.7) - 0.6 = 0.3; j=1: max(0.1, 0.8) - 0.5 = 0.3 -> 0.3
  EXPECT_NEAR(ForgettingMax(kR), 0.3, 1e-12);
  // forgetting_first: j=0: 0.9 - 0.6 = 0.3; j=1: 0.8 - 0.5 = 0.3 -> 0.3
  EXPECT_NEAR(ForgettingFirst(kR), 0.3, 1e-12);
  EXPECT_NEAR(BackwardTransfer(kR), -0.3, 1e-12);
  // fwt: j=1: R[0][1] - b[1] = 0.1 - 0.1 = 0; j=2: R[1][2] - b[2] = 0.2 - 0.05 = 0.15 -> 0.075
  EXPECT_NEAR(ForwardTransfer(kR, {0.1, 0.1, 0.05}), 0.075, 1e-12);
}

TEST(ContinualMetricsTest, MaxDiffersFromFirstWhenAccuracyPeaksLater) {
  // Task 0 peaks after task 1 (0.95 > 0.9): max-forgetting counts from the peak.
  const AccuracyMatrix r = {{0.9, 0.0}, {0.95, 0.8}};
  // K = 2: only j = 0; max over l < 1 of R[l][0] = 0.9; R[1][0] = 0.95.
  EXPECT_NEAR(ForgettingMax(r), -0.05, 1e-12);
  EXPECT_NEAR(ForgettingFirst(r), -0.05, 1e-12);
  const AccuracyMatrix r3 = {{0.9, 0.0, 0.0}, {0.95, 0.8, 0.0}, {0.5, 0.8, 0.7}};
  // j=0: max(0.9, 0.95) - 0.5 = 0.45; j=1: max(0.0, 0.8) - 0.8 = 0 -> 0.225
  EXPECT_NEAR(ForgettingMax(r3), 0.225, 1e-12);
  // j=0: 0.9 - 0.5 = 0.4; j=1: 0.8 - 0.8 = 0 -> 0.2
  EXPECT_NEAR(ForgettingFirst(r3), 0.2, 1e-12);
}

TEST(ContinualMetricsTest, RejectsNonSquareMatrices) {
  EXPECT_THROW(ForgettingMax({{1.0, 0.0}, {1.0}}), std::runtime_error);
  EXPECT_TRUE(std::isnan(ForgettingMax({{1.0}})));
}

}  // namespace
}  // namespace tb
