// The functional models (experiments/models/functional.h) against the nn models, and known
// answers of the functional losses (jacobian_frobenius, fisher, contractive), with their
// autograd gradients against central finite differences. Tiny probe batches: fast.
#include <cmath>

#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "experiments/merge/merging.h"
#include "experiments/models/functional.h"
#include "store/errors.h"

namespace tb {
namespace {

torch::Tensor Flat(Classifier& model) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : model.parameters()) parts.push_back(p.detach().flatten());
  return torch::cat(parts);
}

// A seeded model, in double unless told otherwise, and its flat vector.
ModelPtr Model(const ModelSpec& spec, uint64_t seed, bool as_double = true) {
  torch::manual_seed(seed);
  ModelPtr m = MakeModel(spec);
  if (as_double) m->to(torch::kDouble);
  return m;
}

torch::Tensor Param(Classifier& model, const std::string& name) { return *model.named_parameters().find(name); }

// The model `spec` describes, holding `flat`.
ModelPtr Load(const ModelSpec& spec, const torch::Tensor& flat) {
  ModelPtr m = MakeModel(spec);
  m->to(flat.scalar_type());
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& p : m->parameters()) {
    p.copy_(flat.slice(0, offset, offset + p.numel()).reshape(p.sizes()));
    offset += p.numel();
  }
  return m;
}

LossInputs Inputs(const ModelSpec& spec, const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& probe) {
  LossInputs in;
  DescribeModel(in, spec);
  in.predicted = p;
  in.target = t;
  in.probe = probe;
  return in;
}

double Value(const std::string& name, const LossInputs& in, const std::vector<std::pair<std::string, std::string>>& set = {}) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  return loss->Compute(in).item<double>();
}

torch::Tensor Probe(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand({n, 1, 28, 28}, torch::kDouble);
}

const ModelSpec kCnnTanh{"cnn2464", "tanh"};
const std::vector<std::string> kFunctionalLosses = {"jacobian_frobenius", "fisher", "contractive"};

TEST(FunctionalModelTest, LogitsAndHiddenEqualTheNnForward) {
  for (const std::string arch : {"cnn2464", "wide"}) {
    const ModelSpec spec{arch, "relu"};
    ModelPtr m = Model(spec, 3, /*as_double=*/false);
    torch::NoGradGuard no_grad;
    const auto images = torch::rand({5, 1, 28, 28});
    EXPECT_TRUE(torch::equal(FunctionalLogits(spec, Flat(*m), images), m->forward(images))) << arch;
    const auto hidden = FunctionalHidden(spec, Flat(*m), images), expected = m->HiddenActivations(images);
    ASSERT_EQ(hidden.size(), expected.size()) << arch;
    for (size_t l = 0; l < hidden.size(); ++l) EXPECT_TRUE(torch::equal(hidden[l], expected[l])) << arch << " layer " << l;
    EXPECT_EQ(FunctionalForward(spec, Flat(*m), images).names, m->HiddenLayerNames()) << arch;
    EXPECT_EQ(ParameterCount(spec), CountParameters(*m)) << arch;
  }
}

TEST(FunctionalModelTest, BatchedNetworksEqualSingleRuns) {
  for (const std::string arch : {"cnn2464", "wide"}) {
    const ModelSpec spec{arch, "tanh"};
    std::vector<ModelPtr> models;
    std::vector<torch::Tensor> flats;
    for (uint64_t s = 0; s < 3; ++s) {
      models.push_back(Model(spec, 10 + s));
      flats.push_back(Flat(*models.back()));
    }
    torch::NoGradGuard no_grad;
    const auto flat = torch::stack(flats);
    const auto shared = Probe(4, 1), own = torch::rand({3, 4, 1, 28, 28}, torch::kDouble);
    const auto logits = FunctionalLogits(spec, flat, shared), own_logits = FunctionalLogits(spec, flat, own);
    const auto hidden = FunctionalHidden(spec, flat, shared);
    // One image per network: the grouped path, equal up to rounding.
    const auto one = own.slice(1, 0, 1);
    const auto one_pass = FunctionalForward(spec, flat, one);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 4, 10}));
    ASSERT_EQ(one_pass.logits.sizes(), (std::vector<int64_t>{3, 1, 10}));
    for (int64_t b = 0; b < 3; ++b) {
      EXPECT_TRUE(torch::equal(logits[b], models[b]->forward(shared))) << arch;
      EXPECT_TRUE(torch::equal(own_logits[b], models[b]->forward(own[b]))) << arch;
      EXPECT_TRUE(torch::allclose(one_pass.logits[b], models[b]->forward(one[b]), 1e-10, 1e-12)) << arch;
      const auto expected = models[b]->HiddenActivations(shared), expected_one = models[b]->HiddenActivations(one[b]);
      for (size_t l = 0; l < expected.size(); ++l) {
        EXPECT_TRUE(torch::equal(hidden[l][b], expected[l])) << arch << " layer " << l;
        EXPECT_TRUE(torch::allclose(one_pass.hidden[l][b], expected_one[l], 1e-10, 1e-12)) << arch << " layer " << l;
      }
    }
  }
}

TEST(FunctionalModelTest, RefusesBadShapesAndLeavesTheGeneratorAlone) {
  const ModelSpec spec{"cnn2464", "relu"};
  const auto images = torch::rand({2, 1, 28, 28});
  EXPECT_THROW(FunctionalLogits(spec, torch::zeros({2463}), images), BadInput);
  EXPECT_THROW(FunctionalLogits(spec, torch::zeros({2, 2464}), torch::rand({2, 1, 27, 27})), BadInput);
  EXPECT_THROW(FunctionalLogits(spec, torch::zeros({2, 2464}), torch::rand({3, 2, 1, 28, 28})), BadInput);  // 3 != B
  EXPECT_THROW(FunctionalLogits(ModelSpec{"nosuch", "relu"}, torch::zeros({10}), images), BadInput);
  EXPECT_EQ(ParameterCount(ModelSpec{"verydeep", "relu"}), (784 * 64 + 64) + 5 * (64 * 64 + 64) + (64 * 10 + 10));
  torch::manual_seed(5);
  const auto expected = torch::rand({4});
  torch::manual_seed(5);
  ParameterShapes(ModelSpec{"superwide", "relu"});  // made now, for the first time
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected));
}

TEST(FunctionalLossTest, Registered) {
  for (const auto& name : kFunctionalLosses) EXPECT_NO_THROW(Losses().Find(name)) << name;
}

TEST(FunctionalLossTest, JacobianIsZeroForIdenticalNetworksAndSymmetric) {
  const ModelSpec spec{"cnn2464", "relu"};
  const auto a = Flat(*Model(spec, 1)), b = Flat(*Model(spec, 2));
  const auto probe = Probe(3, 4);
  EXPECT_EQ(Value("jacobian_frobenius", Inputs(spec, a, a.clone(), probe)), 0.0);
  const double ab = Value("jacobian_frobenius", Inputs(spec, a, b, probe));
  EXPECT_GT(ab, 0.0);
  EXPECT_NEAR(ab, Value("jacobian_frobenius", Inputs(spec, b, a, probe)), 1e-12 * ab);
  EXPECT_NEAR(Value("jacobian_frobenius", Inputs(spec, b, a, probe), {{"output", "probs"}}),
              Value("jacobian_frobenius", Inputs(spec, a, b, probe), {{"output", "probs"}}), 1e-12);
  // A batch is the mean of its rows.
  EXPECT_NEAR(Value("jacobian_frobenius", Inputs(spec, torch::stack({a, b}), torch::stack({b, b}), probe)), ab / 2, 1e-9 * ab);
}

TEST(FunctionalLossTest, JacobianKnownAnswers) {
  const ModelSpec spec{"cnn2464", "relu"};
  ModelPtr m = Model(spec, 1);
  const auto t = Flat(*m);
  const int64_t head = t.numel() - 210;  // head.weight [10, 20], head.bias [10]
  const auto probe = Probe(3, 5);
  // Logits that differ by a constant: the same Jacobian, a nonzero weight distance.
  auto shifted = t.clone();
  shifted.slice(0, t.numel() - 10).add_(1.0);
  EXPECT_EQ(Value("jacobian_frobenius", Inputs(spec, shifted, t, probe)), 0.0);
  EXPECT_GT(Value("mse", Inputs(spec, shifted, t, probe)), 0.0);
  EXPECT_GT(Value("jacobian_frobenius", Inputs(spec, shifted, t, probe), {{"output", "probs"}}), 0.0);
  // The head doubled: J_p = 2 J_t, so ||J_p − J_t|| = ||J_t|| = the distance to a zero head.
  auto doubled = t.clone(), zero_head = t.clone();
  doubled.slice(0, head).mul_(2.0);
  zero_head.slice(0, head).zero_();
  const double value = Value("jacobian_frobenius", Inputs(spec, doubled, t, probe));
  EXPECT_NEAR(value, Value("jacobian_frobenius", Inputs(spec, t, zero_head, probe)), 1e-12 * value);
  // ||J_t||, image by image, from the nn model's own autograd.
  double norms = 0;
  for (int64_t n = 0; n < probe.size(0); ++n) {
    auto x = probe.slice(0, n, n + 1).clone().requires_grad_(true);
    const auto logits = m->forward(x);
    double squared = 0;
    for (int64_t c = 0; c < 10; ++c) {
      squared += torch::autograd::grad({logits[0][c]}, {x}, {}, /*retain_graph=*/true)[0].square().sum().item<double>();
    }
    norms += std::sqrt(squared);
  }
  EXPECT_NEAR(value, norms / probe.size(0), 1e-10 * value);
}

TEST(FunctionalLossTest, JacobianProjectionsApproachTheExactValue) {
  const auto a = Flat(*Model(kCnnTanh, 1)), b = Flat(*Model(kCnnTanh, 2));
  const auto in = Inputs(kCnnTanh, a, b, Probe(2, 6));
  const double exact = Value("jacobian_frobenius", in);
  const double few = Value("jacobian_frobenius", in, {{"projections", "4"}});
  const double many = Value("jacobian_frobenius", in, {{"projections", "400"}});
  EXPECT_EQ(few, Value("jacobian_frobenius", in, {{"projections", "4"}}));  // seeded
  EXPECT_NE(few, Value("jacobian_frobenius", in, {{"projections", "4"}, {"seed", "1"}}));
  EXPECT_NEAR(few, exact, 0.5 * exact);
  EXPECT_NEAR(many, exact, 0.05 * exact);
  EXPECT_LT(std::abs(many - exact), std::abs(few - exact));
}

// The Fisher of the nn model, from tb::DiagonalFisher, flattened in parameter order.
torch::Tensor ReferenceFisher(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& probe,
                              const torch::Tensor& labels) {
  ModelPtr m = Load(spec, flat);
  std::vector<torch::Tensor> parts;
  for (const auto& [name, f] : DiagonalFisher(*m, probe, labels)) parts.push_back(f.flatten());
  return torch::cat(parts);
}

TEST(FunctionalLossTest, FisherKnownAnswers) {
  ModelPtr m = Model(kCnnTanh, 1);
  const auto t = Flat(*m);
  torch::manual_seed(7);
  const auto p = t + 0.1 * torch::randn_like(t);
  const auto probe = Probe(3, 8);
  auto in = Inputs(kCnnTanh, p, t, probe);
  EXPECT_EQ(Value("fisher", Inputs(kCnnTanh, t, t.clone(), probe)), 0.0);
  // The target's own predictions as labels.
  torch::Tensor own;
  {
    torch::NoGradGuard no_grad;
    own = m->forward(probe).argmax(1);
  }
  const auto d2 = (p - t).square();
  auto f = ReferenceFisher(kCnnTanh, t, probe, own);
  EXPECT_NEAR(Value("fisher", in, {{"normalize", "none"}}), (f * d2).sum().item<double>(), 1e-9 * (f * d2).sum().item<double>());
  EXPECT_NEAR(Value("fisher", in), ((f * d2).sum() / f.sum()).item<double>(), 1e-9 * ((f * d2).sum() / f.sum()).item<double>());
  // Given labels: the empirical Fisher; a floor is added to every F_i.
  in.labels = torch::tensor(std::vector<int64_t>{1, 4, 7});
  f = ReferenceFisher(kCnnTanh, t, probe, in.labels) + 0.5;
  const double expected = (f * d2).sum().item<double>();
  EXPECT_NEAR(Value("fisher", in, {{"normalize", "none"}, {"floor", "0.5"}}), expected, 1e-9 * expected);
  // A uniform Fisher (a huge floor) gives the MSE.
  EXPECT_NEAR(Value("fisher", in, {{"floor", "1e12"}}), d2.mean().item<double>(), 1e-6 * d2.mean().item<double>());
  in.labels = torch::tensor(std::vector<int64_t>{1, 4, 10});
  EXPECT_THROW(Value("fisher", in), BadInput);
  in.labels = torch::tensor(std::vector<int64_t>{1, 4});
  EXPECT_THROW(Value("fisher", in), BadInput);
}

TEST(FunctionalLossTest, ContractiveMatchesTheHiddenActivations) {
  const ModelSpec spec{"cnn2464", "sigmoid"};
  ModelPtr m = Model(spec, 1);
  const auto p = Flat(*m);
  const auto probe = Probe(2, 9);
  const auto in = Inputs(spec, p, torch::zeros_like(p), probe);
  torch::NoGradGuard no_grad;
  // λ Σ (h(1 − h))² ||w||², each unit's kernel norm, mean over the probe images.
  const auto hidden = m->HiddenActivations(probe);
  const std::vector<torch::Tensor> weights = {Param(*m, "conv1.weight"), Param(*m, "conv2.weight"),
                                              Param(*m, "conv3.weight"), Param(*m, "fc1.weight")};
  double total = 0, conv3 = 0;
  for (size_t l = 0; l < hidden.size(); ++l) {
    const auto slope = (hidden[l] * (1 - hidden[l])).square();
    const auto kernel = weights[l].flatten(1).square().sum(1);
    const auto per_unit = slope.dim() == 4 ? slope * kernel.reshape({1, -1, 1, 1}) : slope * kernel;
    const double term = per_unit.sum().item<double>() / probe.size(0);
    total += term;
    if (l == 2) conv3 = term;
  }
  EXPECT_NEAR(Value("contractive", in, {{"lambda", "0.01"}}), 0.01 * total, 1e-12 * total);
  EXPECT_NEAR(Value("contractive", in, {{"lambda", "1"}, {"layer", "conv3"}}), conv3, 1e-12 * conv3);
  // The target is not used.
  EXPECT_EQ(Value("contractive", in), Value("contractive", Inputs(spec, p, p.clone(), probe)));
  // tanh: 1 − h² in place of h(1 − h).
  ModelPtr tanh_model = Load(kCnnTanh, p);
  const auto h = tanh_model->HiddenActivations(probe)[3];
  const double fc1 = ((1 - h.square()).square() * Param(*tanh_model, "fc1.weight").square().sum(1)).sum().item<double>() / probe.size(0);
  EXPECT_NEAR(Value("contractive", Inputs(kCnnTanh, p, p, probe), {{"lambda", "1"}, {"layer", "fc1"}}), fc1, 1e-12 * fc1);
}

TEST(FunctionalLossTest, ContractiveIsTheLayerJacobianNorm) {
  // fc1's term is ||∂h4/∂h3||_F², from autograd on the nn model's layer.
  const ModelSpec spec{"cnn2464", "sigmoid"};
  ModelPtr m = Model(spec, 2);
  const auto probe = Probe(2, 10);
  const auto h3 = m->HiddenActivations(probe)[2].detach().flatten(1).requires_grad_(true);
  const auto h4 = torch::sigmoid(torch::linear(h3, Param(*m, "fc1.weight"), Param(*m, "fc1.bias")));
  double squared = 0;
  for (int64_t i = 0; i < h4.size(1); ++i) {
    squared += torch::autograd::grad({h4.select(1, i).sum()}, {h3}, {}, /*retain_graph=*/true)[0].square().sum().item<double>();
  }
  const auto p = Flat(*m);
  EXPECT_NEAR(Value("contractive", Inputs(spec, p, p, probe), {{"lambda", "1"}, {"layer", "fc1"}}),
              squared / probe.size(0), 1e-12 * squared);
}

TEST(FunctionalLossTest, RefuseBadInputs) {
  const auto p = Flat(*Model(kCnnTanh, 1));
  const auto probe = Probe(2, 11);
  for (const auto& name : kFunctionalLosses) {
    auto loss = Losses().Find(name).make();
    auto in = Inputs(kCnnTanh, p, p, probe);
    in.probe = torch::Tensor();
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": no probe";
    in.probe = torch::rand({2, 1, 27, 27}, torch::kDouble);
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": probe shape";
    in = Inputs(kCnnTanh, p, p, probe);
    in.arch.clear();
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": no arch";
    in = Inputs(kCnnTanh, p, p, probe);
    in.activation.clear();
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": no activation";
    in = Inputs(kCnnTanh, p.slice(0, 1), p.slice(0, 1), probe);
    in.layer_bounds.clear();
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": wrong length";
    in = Inputs(kCnnTanh, p, p.slice(0, 1), probe);
    EXPECT_THROW(loss->Compute(in), BadInput) << name << ": shapes differ";
  }
  const auto in = Inputs(kCnnTanh, p, p, probe);
  EXPECT_THROW(Value("jacobian_frobenius", in, {{"projections", "-1"}}), BadInput);
  EXPECT_THROW(Value("jacobian_frobenius", in, {{"output", "hessian"}}), BadInput);
  EXPECT_THROW(Value("fisher", in, {{"floor", "-1"}}), BadInput);
  EXPECT_THROW(Value("fisher", in, {{"normalize", "sum"}}), BadInput);
  EXPECT_THROW(Value("contractive", in, {{"lambda", "-1"}}), BadInput);
  EXPECT_THROW(Value("contractive", in, {{"layer", "fc9"}}), BadInput);
}

TEST(FunctionalLossTest, GradientsMatchFiniteDifferences) {
  const auto t = torch::stack({Flat(*Model(kCnnTanh, 1)), Flat(*Model(kCnnTanh, 2))});
  torch::manual_seed(12);
  const auto p0 = t + 0.2 * torch::randn_like(t);
  const auto probe = Probe(2, 13);
  const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> cases = {
      {"jacobian_frobenius", {}},
      {"jacobian_frobenius", {{"output", "probs"}, {"projections", "3"}}},
      {"fisher", {}},
      {"contractive", {{"lambda", "1"}}}};
  // Entries in conv1, conv2, conv3, fc1 and the head of both networks.
  const std::vector<int64_t> entries = {3, 250, 1250, 1300, 2000, 2300, 2464 + 7, 2464 + 1500, 2464 + 2460};
  for (const auto& [name, set] : cases) {
    auto loss = Losses().Find(name).make();
    for (const auto& [k, v] : set) loss->options().SetText(k, v);
    auto p = p0.clone().requires_grad_(true);
    loss->Compute(Inputs(kCnnTanh, p, t, probe)).backward();
    const auto grad = p.grad().flatten();
    const double h = 1e-6;
    for (int64_t i : entries) {
      auto plus = p0.clone(), minus = p0.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      const double fd = (loss->Compute(Inputs(kCnnTanh, plus, t, probe)).item<double>() -
                         loss->Compute(Inputs(kCnnTanh, minus, t, probe)).item<double>()) /
                        (2 * h);
      EXPECT_NEAR(grad[i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << " entry " << i;
    }
  }
}

}  // namespace
}  // namespace tb
