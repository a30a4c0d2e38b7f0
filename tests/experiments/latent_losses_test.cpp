// Known answers of the latent losses and the composite (experiments/losses/latent_losses.cpp),
// with a hand-made LatentAccess: linear "encoders" and given necks.
#include <cmath>

#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

// Encoder k reads weight k − 1 of a 2-vector; the necks are given.
class FakeLatents : public LatentAccess {
 public:
  torch::Tensor neck, augmented, w1, w2;
  torch::Tensor Neck() override { return neck; }
  torch::Tensor AugmentedNeck() override { return augmented; }
  torch::Tensor Encode(int k, const torch::Tensor& w) override { return w.slice(1, k - 1, k); }
  torch::Tensor Input(int k) override { return k == 1 ? w1 : w2; }
};

torch::Tensor Row(std::vector<double> v) { return torch::tensor(v, torch::kDouble).unsqueeze(0); }

double Value(const std::string& name, LossInputs in, const std::vector<std::pair<std::string, std::string>>& set = {}) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  return loss->Compute(in).item<double>();
}

TEST(LatentLossTest, NtXentAndContrastiveKnownAnswers) {
  // Two pairs whose views agree and are orthogonal to the other pair's: every row's positive has
  // similarity 1, its two negatives 0 (τ = 1): −log(e / (e + 2)).
  const auto eye = torch::eye(2, torch::kDouble);
  EXPECT_NEAR(NtXent(eye, eye, 1.0).item<double>(), -std::log(std::exp(1.0) / (std::exp(1.0) + 2)), 1e-12);
  FakeLatents z;
  z.neck = eye;
  z.augmented = eye.clone();
  LossInputs in;
  in.latent = &z;
  EXPECT_NEAR(Value("contrastive", in, {{"temperature", "0.5"}}), -std::log(std::exp(2.0) / (std::exp(2.0) + 2)), 1e-12);
  // Swapped views (each row's positive is the other pair's) cost more.
  const double agreeing = Value("contrastive", in);
  z.augmented = eye.flip({0});
  EXPECT_GT(Value("contrastive", in), agreeing + 1);
  LossInputs none;
  EXPECT_THROW(Value("contrastive", none), BadInput);  // no merger latents
  z.neck = eye.slice(0, 0, 1);
  z.augmented = eye.slice(0, 0, 1);
  EXPECT_THROW(Value("contrastive", in), BadInput);  // one pair: no negatives
  EXPECT_THROW(Value("contrastive", in, {{"temperature", "0"}}), BadInput);
}

TEST(LatentLossTest, LatentConsistencyKnownAnswer) {
  FakeLatents z;
  z.w1 = Row({2, 0});
  z.w2 = Row({0, 2});
  LossInputs in;
  in.predicted = Row({1, 1});
  in.target = Row({0, 0});
  in.latent = &z;
  // Encoder 1: L_Z = 1, L_x1 = 4, L_x2 = 0 → 1 + 2 · 1 / 4; encoder 2 the same; plus MSE(p, t) = 1.
  EXPECT_NEAR(Value("latent_consistency", in, {{"reconstruction", "0"}, {"eps", "1e-12"}}), 3.0, 1e-9);
  EXPECT_NEAR(Value("latent_consistency", in, {{"eps", "1e-12"}}), 4.0, 1e-9);
  LossInputs same = in;
  same.predicted = in.target.clone();
  EXPECT_NEAR(Value("latent_consistency", same), 0.0, 1e-12);
  LossInputs no_latent = in;
  no_latent.latent = nullptr;
  EXPECT_THROW(Value("latent_consistency", no_latent), BadInput);
}

TEST(LatentLossTest, CompositeIsMadeOfNamedLosses) {
  FakeLatents z;
  z.neck = torch::eye(2, torch::kDouble);
  z.augmented = z.neck.clone();
  LossInputs in;
  in.predicted = torch::tensor({{1.0, 2.0}, {3.0, 4.0}}, torch::kDouble);
  in.target = torch::zeros({2, 2}, torch::kDouble);
  in.latent = &z;
  const double mse = Value("mse", in), nt = Value("contrastive", in);
  EXPECT_NEAR(Value("composite", in, {{"reconstruction", "mse"}, {"topological", "none"}, {"regularizer", "none"},
                                      {"beta", "0.7"}}),
              0.7 * mse + 0.3 * nt, 1e-12);
  EXPECT_NEAR(Value("composite", in, {{"reconstruction", "mse"}, {"contrastive", "none"}, {"topological", "quantile"},
                                      {"regularizer", "none"}, {"beta", "1"}, {"alpha", "2"}}),
              mse + 2 * Value("quantile", in), 1e-12);
  EXPECT_THROW(Value("composite", in, {{"reconstruction", "composite"}}), BadInput);
  EXPECT_THROW(Value("composite", in, {{"reconstruction", "no_such"}, {"contrastive", "none"}, {"topological", "none"},
                                       {"regularizer", "none"}}),
               BadInput);
  EXPECT_THROW(Value("composite", in, {{"reconstruction", "none"}, {"contrastive", "none"}, {"topological", "none"},
                                       {"regularizer", "none"}}),
               BadInput);
  EXPECT_THROW(Value("composite", in, {{"beta", "1.5"}}), BadInput);
}

TEST(LatentLossTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(4);
  FakeLatents z;
  z.w1 = torch::randn({3, 2}, torch::kDouble);
  z.w2 = torch::randn({3, 2}, torch::kDouble);
  const auto t = torch::randn({3, 2}, torch::kDouble), p0 = torch::randn({3, 2}, torch::kDouble);
  const auto n0 = torch::randn({3, 4}, torch::kDouble), aug = torch::randn({3, 4}, torch::kDouble);
  auto check = [&](const std::string& name, bool wrt_neck) {
    auto loss = Losses().Find(name).make();
    auto eval = [&](const torch::Tensor& x) {
      FakeLatents f = z;
      f.neck = wrt_neck ? x : n0;
      f.augmented = aug;
      LossInputs in;
      in.predicted = wrt_neck ? p0 : x;
      in.target = t;
      in.latent = &f;
      return loss->Compute(in);
    };
    const auto x0 = wrt_neck ? n0 : p0;
    auto x = x0.clone().requires_grad_(true);
    eval(x).backward();
    for (int64_t i = 0; i < x0.numel(); i += 2) {
      auto plus = x0.clone(), minus = x0.clone();
      plus.view(-1)[i] += 1e-6;
      minus.view(-1)[i] -= 1e-6;
      const double fd = (eval(plus).item<double>() - eval(minus).item<double>()) / 2e-6;
      EXPECT_NEAR(x.grad().view(-1)[i].item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << name << " " << i;
    }
  };
  check("latent_consistency", false);
  check("contrastive", true);
}

}  // namespace
}  // namespace tb
