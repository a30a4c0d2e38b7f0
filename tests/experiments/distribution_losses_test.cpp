// Known answers of the distributional weight-space losses (experiments/losses/distribution_losses.cpp):
// exact 1-D Wasserstein distances, Sinkhorn against a hand-solved 3-point transport problem, the
// Jensen-Shannon bound sqrt(ln 2), Gromov-Wasserstein's invariance to permutation and negation,
// bad options, and gradients against central finite differences.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;

const std::vector<std::string> kDistributionLosses = {"jensen_shannon", "sinkhorn", "sliced_wasserstein",
                                                      "gromov_wasserstein"};

// Small, converged settings for the iterative losses (Sinkhorn: fixed iteration counts, tolerance 0).
const Settings kSinkhornConverged = {{"epsilon", "0.05"}, {"iterations", "300"}, {"tolerance", "0"}};
// (Gromov-Wasserstein: run to a tolerance far below what the tests resolve.)
const Settings kGromovConverged = {{"epsilon", "0.002"}, {"iterations", "30"}, {"sinkhorn_iterations", "300"},
                                   {"tolerance", "1e-13"}};

torch::Tensor Evaluate(const std::string& name, const torch::Tensor& p, const torch::Tensor& t,
                       const Settings& set = {}) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  LossInputs in;
  in.predicted = p;
  in.target = t;
  return loss->Compute(in);
}

double Value(const std::string& name, const torch::Tensor& p, const torch::Tensor& t, const Settings& set = {}) {
  return Evaluate(name, p, t, set).item<double>();
}

torch::Tensor Vec(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

TEST(DistributionLossTest, RegisteredAndZeroForIdenticalInputs) {
  for (const auto& name : kDistributionLosses) EXPECT_TRUE(Losses().Contains(name)) << name;
  torch::manual_seed(0);
  const auto w = torch::randn({2, 24}, torch::kDouble);
  EXPECT_NEAR(Value("jensen_shannon", w, w.clone()), 0.0, 1e-12);
  EXPECT_NEAR(Value("sinkhorn", w, w.clone()), 0.0, 1e-12);  // debiased by default
  EXPECT_NEAR(Value("sliced_wasserstein", w, w.clone()), 0.0, 1e-12);
  EXPECT_NEAR(Value("sliced_wasserstein", w, w.clone(), {{"dim", "3"}}), 0.0, 1e-12);
  // Entropic GW is not debiased: its plan is a blurred identity, of cost O(ε).
  EXPECT_NEAR(Value("gromov_wasserstein", w, w.clone(), kGromovConverged), 0.0, 1e-3);
}

TEST(DistributionLossTest, SlicedWassersteinKnownAnswers) {
  // sorted {-1, 0, 2, 3} against sorted {-2, 1, 2, 5}: gaps 1, 1, 0, 2.
  const auto a = Vec({3, -1, 2, 0}), b = Vec({1, 5, -2, 2});
  EXPECT_NEAR(Value("sliced_wasserstein", a, b, {{"p", "1"}}), (1.0 + 1 + 0 + 2) / 4, 1e-12);
  EXPECT_NEAR(Value("sliced_wasserstein", a, b), std::sqrt((1.0 + 1 + 0 + 4) / 4), 1e-12);
  // A shift by c moves every 1-D projection by <θ, c> and keeps its order, so W_2 along θ is
  // |<θ, c>|: in 1-D SW_2 is |c| exactly; in 2-D it is sqrt(mean_θ <θ, c>²) over the same
  // directions (drawn here as the loss documents), which tends to |c| / sqrt(2) for many θ.
  torch::manual_seed(3);
  const auto x = torch::randn({1, 40}, torch::kDouble);
  EXPECT_NEAR(Value("sliced_wasserstein", x, x + 0.7), 0.7, 1e-12);
  const auto c = Vec({0.3, -0.4});
  const auto shifted = (x.view({1, 20, 2}) + c).view({1, 40});
  auto generator = at::detail::createCPUGenerator(/*seed=*/5);
  auto theta = torch::randn({16, 2}, generator, torch::kDouble);
  theta = theta / theta.norm(2, 1, /*keepdim=*/true);
  const double expected = std::sqrt(theta.matmul(c).pow(2).mean().item<double>());
  EXPECT_NEAR(Value("sliced_wasserstein", x, shifted, {{"dim", "2"}, {"projections", "16"}, {"seed", "5"}}), expected,
              1e-12);
  EXPECT_NEAR(Value("sliced_wasserstein", x, shifted, {{"dim", "2"}, {"projections", "20000"}}), 0.5 / std::sqrt(2.0),
              0.01);
  // The directions depend on the seed only.
  const Settings seed1 = {{"dim", "2"}, {"seed", "1"}}, seed2 = {{"dim", "2"}, {"seed", "2"}};
  const auto y = torch::randn({1, 40}, torch::kDouble);
  EXPECT_EQ(Value("sliced_wasserstein", x, y, seed1), Value("sliced_wasserstein", x, y, seed1));
  EXPECT_NE(Value("sliced_wasserstein", x, y, seed1), Value("sliced_wasserstein", x, y, seed2));
  // A batch is the mean of its rows.
  EXPECT_NEAR(Value("sliced_wasserstein", torch::stack({a, b}), torch::stack({b, b})),
              Value("sliced_wasserstein", a, b) / 2, 1e-12);
}

TEST(DistributionLossTest, SinkhornTendsToTheExactTransportCost) {
  // {0, 1, 3} against {0.5, 2, 4}: in 1-D the sorted matching is optimal, cost
  // (0.5² + 1² + 1²) / 3 = 0.75.
  const auto a = Vec({0, 1, 3}), b = Vec({4, 0.5, 2});
  double previous = 1e9;
  for (const std::string eps : {"0.3", "0.1", "0.01", "0.001"}) {
    const double v = Value("sinkhorn", a, b, {{"epsilon", eps}, {"iterations", "300"}, {"debias", "false"}});
    EXPECT_LT(std::abs(v - 0.75), std::max(previous, 1e-12)) << "epsilon " << eps;  // down to rounding
    previous = std::abs(v - 0.75);
  }
  EXPECT_LT(previous, 1e-12);
  // Debiased: S(a, a) and S(b, b) vanish as ε shrinks too.
  EXPECT_NEAR(Value("sinkhorn", a, b, {{"epsilon", "0.001"}, {"iterations", "300"}}), 0.75, 1e-9);
  // Plain Sinkhorn (scaling 0) reaches the same plan where it converges (ε = 1: in ~550 iterations).
  const Settings plain = {{"epsilon", "1"}, {"iterations", "3000"}, {"tolerance", "0"}, {"debias", "false"}};
  Settings plain_unscaled = plain;
  plain_unscaled.push_back({"scaling", "0"});
  EXPECT_NEAR(Value("sinkhorn", a, b, plain), Value("sinkhorn", a, b, plain_unscaled), 1e-12);
  // points = n keeps evenly spaced quantiles: of {0, ..., 5}, n = 3 keeps ranks ⌊(k + ½) 2⌋: 1, 3, 5.
  const auto six = Vec({5, 1, 3, 0, 2, 4});
  EXPECT_NEAR(Value("sinkhorn", six, six + 1, {{"points", "3"}, {"epsilon", "0.001"}, {"debias", "false"}}), 1.0, 1e-6);
}

TEST(DistributionLossTest, SinkhornSolversAgree) {
  // The stabilised solver's scaling steps and absorptions give the logsumexp solver's iterates,
  // also at an ε small enough that the kernel underflows (C / ε up to ~10^4).
  torch::manual_seed(5);
  const auto a = torch::randn({2, 12}, torch::kDouble), b = torch::randn({2, 12}, torch::kDouble);
  for (const std::string eps : {"0.05", "0.001"}) {
    for (const std::string scaling : {"0", "0.5"}) {
      for (const std::string debias : {"true", "false"}) {
        const Settings base = {{"epsilon", eps}, {"iterations", "200"}, {"scaling", scaling}, {"debias", debias}};
        Settings log = base;
        log.push_back({"solver", "log"});
        EXPECT_NEAR(Value("sinkhorn", a, b, base), Value("sinkhorn", a, b, log), 1e-10)
            << eps << " " << scaling << " " << debias;
      }
    }
  }
  Settings gw_log = kGromovConverged;
  gw_log.push_back({"solver", "log"});
  EXPECT_NEAR(Value("gromov_wasserstein", 0.3 * a, 0.3 * b, kGromovConverged),
              Value("gromov_wasserstein", 0.3 * a, 0.3 * b, gw_log), 1e-10);
  // float32 (τ = 20 there), where the kernel underflows sooner.
  for (const std::string eps : {"0.01", "0.001"}) {
    EXPECT_NEAR(Value("sinkhorn", a.to(torch::kFloat), b.to(torch::kFloat), {{"epsilon", eps}}),
                Value("sinkhorn", a, b, {{"epsilon", eps}}), 1e-4)
        << eps;
  }
}

TEST(DistributionLossTest, JensenShannonKnownAnswers) {
  // Two bins on [0, 1] (centres 0.25, 0.75), σ chosen so that exp(−0.5² / 2σ²) = 1/3: one value
  // at 0.25 has soft histogram (3/4, 1/4), one at 0.75 (1/4, 3/4), their mixture (1/2, 1/2).
  const double sigma = 0.5 / std::sqrt(2 * std::log(3.0));
  const double kl = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);
  EXPECT_NEAR(Value("jensen_shannon", Vec({0.25}), Vec({0.75}),
                    {{"bins", "2"}, {"range", "0,1"}, {"bandwidth", fmt::format("{:.17g}", sigma)}}),
              std::sqrt(kl), 1e-12);
  // Disjoint narrow histograms: JSD = ln 2, its maximum; overlapping ones come out below.
  const auto low = torch::linspace(0, 0.01, 20, torch::kDouble), high = torch::linspace(0.99, 1, 20, torch::kDouble);
  EXPECT_NEAR(Value("jensen_shannon", low, high), std::sqrt(std::log(2.0)), 1e-9);
  EXPECT_NEAR(Value("jensen_shannon", low, high, {{"bandwidth", "0.001"}}), std::sqrt(std::log(2.0)), 1e-12);
  EXPECT_LT(Value("jensen_shannon", low, high, {{"bandwidth", "0.3"}}), std::sqrt(std::log(2.0)) - 0.1);
}

TEST(DistributionLossTest, GromovWassersteinIgnoresIsometries) {
  // The intra-vector distances of x, of a permutation of x and of −x are one metric space.
  const auto x = Vec({0.0, 0.1, 0.35, 0.45, 0.8, 1.0});
  const auto permuted = x.index_select(0, torch::tensor(std::vector<int64_t>{3, 0, 5, 1, 4, 2}));
  const double same = Value("gromov_wasserstein", x, x, kGromovConverged);
  EXPECT_NEAR(same, 0.0, 1e-3);
  EXPECT_NEAR(Value("gromov_wasserstein", x, permuted, kGromovConverged), same, 1e-9);
  EXPECT_NEAR(Value("gromov_wasserstein", x, -x, kGromovConverged), same, 1e-9);
  // A different metric space costs more.
  EXPECT_GT(Value("gromov_wasserstein", x, x.pow(3), kGromovConverged), 10 * same);
  // dim = 2: three points (x_2i, x_2i+1), and the same points turned by 90 degrees.
  Settings planar = kGromovConverged;
  planar.push_back({"dim", "2"});
  const auto turned = torch::stack({-x.slice(0, 1, 6, 2), x.slice(0, 0, 6, 2)}, 1).reshape({6});
  EXPECT_NEAR(Value("gromov_wasserstein", x, turned, planar), Value("gromov_wasserstein", x, x, planar), 1e-9);
  EXPECT_NEAR(Value("gromov_wasserstein", x, x, planar), 0.0, 1e-3);
}

TEST(DistributionLossTest, SymmetricWhereTheyShouldBe) {
  torch::manual_seed(1);
  const auto a = torch::randn({2, 12}, torch::kDouble), b = torch::randn({2, 12}, torch::kDouble);
  EXPECT_NEAR(Value("jensen_shannon", a, b), Value("jensen_shannon", b, a), 1e-12);
  EXPECT_NEAR(Value("sliced_wasserstein", a, b), Value("sliced_wasserstein", b, a), 1e-12);
  EXPECT_NEAR(Value("sliced_wasserstein", a, b, {{"dim", "2"}}), Value("sliced_wasserstein", b, a, {{"dim", "2"}}),
              1e-12);
  EXPECT_NEAR(Value("sinkhorn", 0.3 * a, 0.3 * b, kSinkhornConverged),
              Value("sinkhorn", 0.3 * b, 0.3 * a, kSinkhornConverged), 1e-12);
  // Entropic GW is not convex: symmetric where its fixed-point iteration settles (ε not too small).
  const Settings smooth = {
      {"epsilon", "0.02"}, {"iterations", "100"}, {"sinkhorn_iterations", "300"}, {"tolerance", "1e-13"}};
  EXPECT_NEAR(Value("gromov_wasserstein", 0.3 * a, 0.3 * b, smooth),
              Value("gromov_wasserstein", 0.3 * b, 0.3 * a, smooth), 1e-9);
}

TEST(DistributionLossTest, BadOptionsAndInputsThrow) {
  const auto a = torch::randn({1, 6}, torch::kDouble), b = torch::randn({1, 6}, torch::kDouble);
  for (const auto& name : kDistributionLosses) {
    auto loss = Losses().Find(name).make();
    LossInputs in;
    in.predicted = a;
    EXPECT_THROW(loss->Compute(in), BadInput) << name;  // no target
  }
  const std::vector<std::pair<std::string, Settings>> bad = {
      {"sinkhorn", {{"epsilon", "-0.1"}}},
      {"sinkhorn", {{"iterations", "0"}}},
      {"sinkhorn", {{"points", "7"}}},
      {"sinkhorn", {{"scaling", "1"}}},
      {"gromov_wasserstein", {{"epsilon", "-1"}}},
      {"gromov_wasserstein", {{"sinkhorn_iterations", "0"}}},
      {"gromov_wasserstein", {{"dim", "4"}}},
      {"sliced_wasserstein", {{"projections", "0"}}},
      {"sliced_wasserstein", {{"dim", "4"}}},  // 6 values are not points of 4
      {"sliced_wasserstein", {{"p", "0.5"}}},
      {"jensen_shannon", {{"bins", "0"}}},
      {"jensen_shannon", {{"bandwidth", "-1"}}},
      {"jensen_shannon", {{"range", "1,0"}}},
      {"jensen_shannon", {{"range", "0;1"}}},
  };
  for (const auto& [name, set] : bad) {
    EXPECT_THROW(Value(name, a, b, set), BadInput) << name << " " << set.front().first << "=" << set.front().second;
  }
}

TEST(DistributionLossTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(2);
  const auto t = 0.3 * torch::randn({2, 8}, torch::kDouble);  // on the scale of trained weights
  const auto p0 = t + 0.15 * torch::randn({2, 8}, torch::kDouble);
  const std::vector<std::pair<std::string, Settings>> cases = {
      {"jensen_shannon", {{"bins", "8"}, {"range", "-3,3"}}},  // auto: the range is held fixed
      {"sinkhorn", kSinkhornConverged},
      {"sinkhorn", {{"epsilon", "0.05"}, {"iterations", "300"}, {"tolerance", "0"}, {"solver", "log"}}},
      {"sinkhorn", {{"epsilon", "0.05"}, {"iterations", "20"}, {"tolerance", "0"}, {"debias", "false"}}},
      {"sliced_wasserstein", {}},
      {"sliced_wasserstein", {{"dim", "2"}, {"p", "1"}, {"projections", "5"}}},
  };
  for (const auto& [name, set] : cases) {
    auto p = p0.clone().requires_grad_(true);
    Evaluate(name, p, t, set).backward();
    const auto grad = p.grad().clone();
    const double h = 1e-6;
    for (int64_t i = 0; i < p0.numel(); i += 3) {
      auto plus = p0.clone(), minus = p0.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      const double fd = (Value(name, plus, t, set) - Value(name, minus, t, set)) / (2 * h);
      EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << name << " entry " << i;
    }
  }
}

TEST(DistributionLossTest, GromovWassersteinEnvelopeGradient) {
  // The gradient holds the plan T fixed: the cost's own gradient where T is all but a
  // permutation (a target of distinct gaps, a prediction near it, small ε).
  const auto t = Vec({0.0, 0.12, 0.3, 0.45, 0.6, 0.74, 0.88, 1.0}).unsqueeze(0);
  const Settings sharp = {
      {"epsilon", "0.0001"}, {"iterations", "30"}, {"sinkhorn_iterations", "300"}, {"tolerance", "1e-13"}};
  torch::manual_seed(4);
  const auto p0 = t + 0.01 * torch::randn({1, 8}, torch::kDouble);
  auto p = p0.clone().requires_grad_(true);
  Evaluate("gromov_wasserstein", p, t, sharp).backward();
  const double h = 1e-6;
  for (int64_t i = 0; i < p0.numel(); ++i) {
    auto plus = p0.clone(), minus = p0.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    const double fd =
        (Value("gromov_wasserstein", plus, t, sharp) - Value("gromov_wasserstein", minus, t, sharp)) / (2 * h);
    EXPECT_NEAR(p.grad().view(-1)[i].item<double>(), fd, 1e-6) << "entry " << i;
  }
}

}  // namespace
}  // namespace tb
