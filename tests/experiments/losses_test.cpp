// Known answers of the weight-space losses (experiments/losses/), and their autograd gradients
// against central finite differences.
#include <cmath>

#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

const std::vector<std::string> kWeightLosses = {"mse",  "layerwise_normalized_mse", "quantile",          "norm_difference",
                                                "mape", "fft_difference",           "autoregressive_mse"};

double Value(const std::string& name, const torch::Tensor& p, const torch::Tensor& t, std::vector<int64_t> bounds = {},
             const std::vector<std::pair<std::string, std::string>>& set = {}) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  LossInputs in;
  in.predicted = p;
  in.target = t;
  in.layer_bounds = std::move(bounds);
  return loss->Compute(in).item<double>();
}

torch::Tensor Vec(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

TEST(WeightLossTest, EveryLossIsZeroForIdenticalInputsAndRefusesMissingOnes) {
  torch::manual_seed(0);
  const auto w = torch::randn({3, 60}, torch::kDouble);  // P >= 50: autoregressive_mse's default chunks
  for (const auto& name : kWeightLosses) {
    EXPECT_NEAR(Value(name, w, w.clone(), {0, 10, 60}), 0.0, 1e-12) << name;
    auto loss = Losses().Find(name).make();
    LossInputs in;
    in.predicted = w;
    EXPECT_THROW(loss->Compute(in), BadInput) << name;  // no target
    in.target = torch::zeros({3, 59}, torch::kDouble);
    EXPECT_THROW(loss->Compute(in), BadInput) << name;  // shapes differ
    in.target = w;
    in.layer_bounds = {0, 70};
    EXPECT_THROW(loss->Compute(in), BadInput) << name;  // bounds beyond P
  }
}

TEST(WeightLossTest, KnownAnswers) {
  const auto p = Vec({1, 2, 3, 4}), t = Vec({0, 2, 5, 4});  // differences 1, 0, -2, 0
  EXPECT_DOUBLE_EQ(Value("mse", p, t), (1.0 + 4.0) / 4);
  // Pinball at q = 0.5 is half the mean absolute error; at q = 0.9 an under-prediction
  // (t > p: u = 2) costs 0.9 u, an over-prediction (u = -1) 0.1 |u|.
  EXPECT_DOUBLE_EQ(Value("quantile", p, t, {}, {{"q", "0.5"}}), 0.5 * (1.0 + 2.0) / 4);
  EXPECT_DOUBLE_EQ(Value("quantile", p, t, {}, {{"q", "0.9"}}), (0.1 * 1.0 + 0.9 * 2.0) / 4);
  EXPECT_NEAR(Value("norm_difference", p, t), std::abs(std::sqrt(30.0) - std::sqrt(45.0)), 1e-12);
  EXPECT_NEAR(Value("mape", Vec({1.5, 2}), Vec({1, 4}), {}, {{"eps", "1e-9"}}), 100.0 * (0.5 + 0.5) / 2, 1e-6);
  // The DFT of c·δ_0 has modulus |c| at every frequency.
  EXPECT_NEAR(Value("fft_difference", Vec({3, 0, 0, 0, 0}), Vec({0, 0, 0, 0, 0})), 3.0, 1e-12);
  // Per-layer: layer [0, 2) MSE 0.5, layer [2, 4) MSE 2; the target layers' variances 1 and 0.25.
  EXPECT_DOUBLE_EQ(Value("layerwise_normalized_mse", p, t, {0, 2, 4}, {{"normalize", "none"}}), 0.5 + 2.0);
  EXPECT_NEAR(Value("layerwise_normalized_mse", p, t, {0, 2, 4}, {{"eps", "0"}}), 0.5 / 1.0 + 2.0 / 0.25, 1e-12);
  // Two chunks: L_1 = 0.5, L_2 = 2: 0.5 + λ · 2 / 0.5.
  EXPECT_NEAR(Value("autoregressive_mse", p, t, {}, {{"chunks", "2"}, {"lambda", "0.5"}}), 0.5 + 0.5 * 2.0 / 0.5, 1e-6);
  EXPECT_NEAR(Value("autoregressive_mse", p, t, {}, {{"chunks", "1"}}), 1.25, 1e-12);  // one chunk: the MSE
  // A batch is the mean of its rows.
  EXPECT_DOUBLE_EQ(Value("norm_difference", torch::stack({p, t}), torch::stack({t, t})),
                   Value("norm_difference", p, t) / 2);
  EXPECT_THROW(Value("quantile", p, t, {}, {{"q", "1"}}), BadInput);
  EXPECT_THROW(Value("autoregressive_mse", p, t, {}, {{"chunks", "5"}}), BadInput);
}

TEST(WeightLossTest, SymmetricWhereTheyShouldBe) {
  torch::manual_seed(1);
  const auto a = torch::randn({2, 30}, torch::kDouble), b = torch::randn({2, 30}, torch::kDouble);
  for (const std::string name : {"mse", "norm_difference", "fft_difference"}) {
    EXPECT_NEAR(Value(name, a, b), Value(name, b, a), 1e-12) << name;
  }
  EXPECT_NEAR(Value("quantile", a, b), Value("quantile", b, a), 1e-12);  // q = 0.5: half the MAE
  EXPECT_NEAR(Value("layerwise_normalized_mse", a, b, {0, 10, 30}, {{"normalize", "none"}}),
              Value("layerwise_normalized_mse", b, a, {0, 10, 30}, {{"normalize", "none"}}), 1e-12);
}

TEST(WeightLossTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(2);
  const auto t = torch::randn({2, 12}, torch::kDouble);
  // Away from the kinks of |·| and max (a random point is, almost surely).
  const auto p0 = t + 0.5 * torch::randn({2, 12}, torch::kDouble);
  for (const auto& name : kWeightLosses) {
    auto loss = Losses().Find(name).make();
    if (name == "autoregressive_mse") loss->options().SetText("chunks", "3");
    auto p = p0.clone().requires_grad_(true);
    LossInputs in;
    in.predicted = p;
    in.target = t;
    in.layer_bounds = {0, 5, 12};
    loss->Compute(in).backward();
    const auto grad = p.grad().clone();
    const double h = 1e-6;
    for (int64_t i = 0; i < p0.numel(); i += 5) {
      auto plus = p0.clone(), minus = p0.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      LossInputs a = in, b = in;
      a.predicted = plus;
      b.predicted = minus;
      const double fd = (loss->Compute(a).item<double>() - loss->Compute(b).item<double>()) / (2 * h);
      EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << name << " entry " << i;
    }
  }
}

}  // namespace
}  // namespace tb
