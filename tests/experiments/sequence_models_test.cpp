// The sequence families (experiments/models/sequence.h), the weight mapping between them
// (weight_mapping.h) and the bootstrap protocol's curve metrics.
#include <gtest/gtest.h>

#include <set>

#include "experiments/models/sequence.h"
#include "experiments/models/weight_mapping.h"
#include "experiments/protocols/bootstrap.h"
#include "store/errors.h"

namespace tb {
namespace {

SequenceClassifier& Seq(const ModelPtr& m) { return dynamic_cast<SequenceClassifier&>(*m); }

ModelPtr Make(const std::string& arch, uint64_t seed = 1) {
  torch::manual_seed(seed);
  return MakeModel(ModelSpec{arch});
}

TEST(SequenceModelsTest, ParameterCountsAndRolesPerFamily) {
  // Width 64, 28 input features, 10 classes, state size 8. embed 28·64+64 = 1856; head 64·10+10 = 650;
  // a recurrent gate W [64, 64] + U [64, 64] + b [64] = 8256.
  const std::map<std::string, int64_t> expected = {
      {"lstm", 1856 + 4 * 8256 + 650},
      // sLSTM as the LSTM; mLSTM q, k, v 3·4096, input and forget gates 64 + 1 each, output gate 4160.
      {"xlstm", 1856 + 4 * 8256 + 3 * 4096 + 2 * 65 + 4160 + 650},
      // ff1, ff2, t_a, t_b and 64 time constants.
      {"cfc", 1856 + 4 * 8256 + 64 + 650},
      // dt 4096 + 64, A_log 512, B and C 512 each, D 64, gate 4160.
      {"ssm", 1856 + 4160 + 512 + 512 + 512 + 64 + 4160 + 650},
      // log_dt 64, A_log 512, B and C 512 each, D 64, gate 4160.
      {"liquid_s4", 1856 + 64 + 512 + 512 + 512 + 64 + 4160 + 650},
  };
  EXPECT_EQ(SequenceFamilies(), (std::vector<std::string>{"cfc", "liquid_s4", "lstm", "ssm", "xlstm"}));
  const std::set<std::string> roles(ParameterRoleNames().begin(), ParameterRoleNames().end());
  const auto x = torch::rand({3, 1, 28, 28});
  for (const auto& [family, count] : expected) {
    ModelPtr m = Make(family);
    EXPECT_EQ(CountParameters(*m), count) << family;
    EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{3, 10})) << family;
    EXPECT_EQ(m->FeatureWidth(), 64) << family;
    EXPECT_EQ(m->HiddenActivations(x).size(), m->HiddenLayerNames().size()) << family;
    // Roles cover every parameter once, each a known role.
    const auto r = Seq(m).Roles();
    std::set<std::string> with_role, named;
    for (const auto& [name, role] : r) {
      EXPECT_TRUE(with_role.insert(name).second) << family << " " << name;
      EXPECT_TRUE(roles.count(role)) << family << " " << role;
    }
    for (const auto& item : m->named_parameters()) named.insert(item.key());
    EXPECT_EQ(with_role, named) << family;
  }
  // Shapes of the parameters a mapping addresses.
  ModelPtr lstm = Make("lstm96");
  EXPECT_EQ(Seq(lstm).width(), 96);
  EXPECT_EQ(lstm->named_parameters()["forget_gate.U"].sizes(), (std::vector<int64_t>{96, 96}));
  EXPECT_EQ(lstm->named_parameters()["embed.weight"].sizes(), (std::vector<int64_t>{96, 28}));
  ModelPtr x4 = Make("xlstm32");
  EXPECT_EQ(x4->named_parameters()["mlstm.forget_gate.W"].sizes(), (std::vector<int64_t>{1, 32}));
  EXPECT_EQ(Make("ssm")->named_parameters()["A_log"].sizes(), (std::vector<int64_t>{64, kStateSize}));
  EXPECT_EQ(Make("liquid_s4")->named_parameters()["B"].sizes(), (std::vector<int64_t>{kStateSize, 64}));
  EXPECT_THROW(MakeModel(ModelSpec{"lstm0"}), BadInput);
  EXPECT_THROW(MakeModel(ModelSpec{"lstmx"}), BadInput);
  EXPECT_FALSE(IsSequenceArch("wide"));
  EXPECT_TRUE(IsSequenceArch("liquid_s4128"));
  EXPECT_EQ(ParseSequenceArch("liquid_s4128").second, 128);
}

TEST(SequenceModelsTest, SeededAndCloned) {
  for (const auto& f : SequenceFamilies()) {
    ModelPtr a = Make(f, 5), b = Make(f, 5);
    const auto x = torch::rand({2, 1, 28, 28});
    EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x))) << f;
    EXPECT_TRUE(torch::equal(CloneModel(a)->forward(x), a->forward(x))) << f;
  }
}

TEST(SequenceModelsTest, XlstmStabiliserKeepsLargeGatePreactivationsFinite) {
  ModelPtr m = Make("xlstm16");
  {
    torch::NoGradGuard no_grad;
    for (auto& item : m->named_parameters()) {
      const std::string& k = item.key();
      if (k.find("input_gate.b") != std::string::npos || k.find("forget_gate.b") != std::string::npos) item.value().fill_(80.0);
    }
  }
  // 400 steps of large inputs: exp(80 · t) overflows float at once without the stabiliser.
  const auto steps = torch::rand({2, 400, 28}) * 20;
  for (const auto& h : m->HiddenActivations(steps)) EXPECT_TRUE(torch::isfinite(h).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(m->head->forward(m->HiddenActivations(steps).back())).all().item<bool>());
  {
    torch::NoGradGuard no_grad;
    for (auto& item : m->named_parameters()) {
      if (item.key().find("forget_gate.b") != std::string::npos) item.value().fill_(-80.0);
    }
  }
  for (const auto& h : m->HiddenActivations(steps)) EXPECT_TRUE(torch::isfinite(h).all().item<bool>());
}

TEST(WeightMappingTest, ShapeTransformsOnHandMadeTensors) {
  const auto src = torch::arange(1, 7, torch::kFloat).reshape({2, 3});  // [[1,2,3],[4,5,6]]
  // Pad: the overlap copied, the rest zero or the target's own values.
  auto init = torch::full({3, 4}, 9.0);
  auto padded = TransformShape(src, init, PadMode::kZero);
  EXPECT_TRUE(torch::equal(padded, torch::tensor({1.f, 2.f, 3.f, 0.f, 4.f, 5.f, 6.f, 0.f, 0.f, 0.f, 0.f, 0.f}).reshape({3, 4})));
  auto kept = TransformShape(src, init, PadMode::kRandom);
  EXPECT_TRUE(torch::equal(kept, torch::tensor({1.f, 2.f, 3.f, 9.f, 4.f, 5.f, 6.f, 9.f, 9.f, 9.f, 9.f, 9.f}).reshape({3, 4})));
  EXPECT_TRUE(torch::equal(init, torch::full({3, 4}, 9.0)));  // the target's tensor is not changed
  // Truncate.
  EXPECT_TRUE(torch::equal(TransformShape(src, torch::zeros({1, 2}), PadMode::kZero), torch::tensor({{1.f, 2.f}})));
  // Broadcast a missing trailing dimension: [2] → [2, 3], each value along the new axis.
  EXPECT_TRUE(torch::equal(TransformShape(torch::tensor({1.f, 2.f}), torch::zeros({2, 3}), PadMode::kZero),
                           torch::tensor({{1.f, 1.f, 1.f}, {2.f, 2.f, 2.f}})));
  // Mean-reduce an extra trailing dimension: [2, 3] → [2].
  EXPECT_TRUE(torch::equal(TransformShape(src, torch::zeros({2}), PadMode::kZero), torch::tensor({2.f, 5.f})));
  // Mean-reduce, then pad.
  EXPECT_TRUE(torch::equal(TransformShape(src, torch::zeros({3}), PadMode::kZero), torch::tensor({2.f, 5.f, 0.f})));
  EXPECT_EQ(DescribeTransform({2, 3}, {3, 4}), "pad");
  EXPECT_EQ(DescribeTransform({2, 3}, {1, 4}), "truncate, pad");
  EXPECT_EQ(DescribeTransform({2}, {2, 3}), "broadcast along 1 new dimension(s)");
  EXPECT_EQ(DescribeTransform({2, 3}, {2}), "mean over 1 extra dimension(s)");
  EXPECT_EQ(DescribeTransform({4, 4}, {4, 4}), "copy");
  EXPECT_THROW(ParsePadMode("pad", "ones"), BadInput);
}

TEST(WeightMappingTest, SameArchitectureReproducesTheOutputsExactly) {
  const auto x = torch::rand({4, 1, 28, 28});
  for (const auto& f : SequenceFamilies()) {
    ModelPtr source = Make(f, 1), target = Make(f, 2);
    const MappingTable t = BuiltinMapping(f, f);
    CheckMapping(t, *source, *target, "table");
    ApplyMapping(*source, *target, t, PadMode::kZero);
    EXPECT_TRUE(torch::equal(source->forward(x), target->forward(x))) << f;
  }
}

TEST(WeightMappingTest, WiderLstmWithZeroPadComputesTheSourceAndItsPaddingStaysDead) {
  ModelPtr source = Make("lstm32", 1), target = Make("lstm48", 2);
  const MappingTable t = BuiltinMapping("lstm", "lstm");
  ApplyMapping(*source, *target, t, PadMode::kZero);
  const auto x = torch::rand({8, 1, 28, 28});
  // The padded units are zero in and out: the same function (up to the order of float sums).
  EXPECT_TRUE(torch::allclose(source->forward(x), target->forward(x), 1e-5, 1e-6));
  // Padded entries: every tensor's entries outside the copied block.
  int64_t padded = 0;
  auto sp = source->named_parameters();
  for (const auto& item : target->named_parameters()) padded += item.value().numel() - sp[item.key()].numel();
  std::vector<torch::Tensor> before;
  for (const auto& p : target->parameters()) before.push_back(p.detach().clone());
  torch::optim::Adam opt(target->parameters(), torch::optim::AdamOptions(1e-2));
  const auto labels = torch::randint(0, 10, {8}, torch::kInt64);
  for (int i = 0; i < 5; ++i) {
    opt.zero_grad();
    torch::nn::functional::cross_entropy(target->forward(x), labels).backward();
    opt.step();
  }
  EXPECT_DOUBLE_EQ(DeadCapacity(before, target->parameters()),
                   static_cast<double>(padded) / static_cast<double>(CountParameters(*target)));
  // pad=random: nothing stays dead.
  ModelPtr alive = Make("lstm48", 2);
  ApplyMapping(*source, *alive, t, PadMode::kRandom);
  before.clear();
  for (const auto& p : alive->parameters()) before.push_back(p.detach().clone());
  torch::optim::Adam opt2(alive->parameters(), torch::optim::AdamOptions(1e-2));
  for (int i = 0; i < 5; ++i) {
    opt2.zero_grad();
    torch::nn::functional::cross_entropy(alive->forward(x), labels).backward();
    opt2.step();
  }
  EXPECT_DOUBLE_EQ(DeadCapacity(before, alive->parameters()), 0.0);
}

TEST(WeightMappingTest, DeadCapacityCountsPlantedFrozenEntriesExactly) {
  ModelPtr m = Make("cfc16");
  std::vector<torch::Tensor> before;
  for (const auto& p : m->parameters()) before.push_back(p.detach().clone());
  EXPECT_DOUBLE_EQ(DeadCapacity(before, m->parameters()), 1.0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : m->parameters()) p.add_(0.5);
    // 7 entries planted back at their old values.
    auto params = m->parameters();
    params[0].view({-1}).narrow(0, 0, 3).copy_(before[0].view({-1}).narrow(0, 0, 3));
    params[2].view({-1}).narrow(0, 5, 4).copy_(before[2].view({-1}).narrow(0, 5, 4));
  }
  EXPECT_DOUBLE_EQ(DeadCapacity(before, m->parameters()), 7.0 / static_cast<double>(CountParameters(*m)));
}

TEST(WeightMappingTest, LowRankAtFullRankReproducesTheMatrixAndTruncatesByEckartYoung) {
  torch::manual_seed(3);
  const auto m = torch::randn({12, 9});
  EXPECT_TRUE(torch::allclose(LowRank(m, 9), m, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(LowRank(m, 50), m, 1e-5, 1e-5));
  const auto s = torch::linalg_svdvals(m.to(torch::kDouble));
  const double tail = s.narrow(0, 3, 6).pow(2).sum().sqrt().item<double>();
  EXPECT_NEAR((LowRank(m, 3) - m).to(torch::kDouble).norm().item<double>(), tail, 1e-4);
  EXPECT_THROW(LowRank(m, 0), BadInput);
}

TEST(WeightMappingTest, DeclaredTablesFitTheirModelsAndBadTablesNameTheParameter) {
  for (const auto& [s, t] : BuiltinMappingPairs()) {
    ModelPtr source = Make(s + "24"), target = Make(t + "40");
    const MappingTable table = BuiltinMapping(s, t);
    EXPECT_NO_THROW(CheckMapping(table, *source, *target, "table")) << s << "→" << t;
    EXPECT_NO_THROW(ApplyMapping(*source, *target, table, PadMode::kZero)) << s << "→" << t;
  }
  ModelPtr lstm = Make("lstm"), cfc = Make("cfc");
  try {
    CheckMapping(ParseMapping("table", "forget_gate.W=nosuch.W"), *lstm, *cfc, "table");
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_NE(std::string(e.what()).find("the target cfc has no parameter 'nosuch.W'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CheckMapping(ParseMapping("table", "a.W=ff1.W"), *lstm, *cfc, "table"), BadInput);
  EXPECT_THROW(CheckMapping(ParseMapping("table", "candidate.W=ff1.W,input_gate.W=ff1.W"), *lstm, *cfc, "table"), BadInput);
  EXPECT_THROW(ParseMapping("table", "candidate.W"), BadInput);
  EXPECT_THROW(BuiltinMapping("cfc", "ssm"), BadInput);
}

TEST(BootstrapMetricsTest, StepsToTargetAndAreaUnderCurve) {
  LearningCurve c;
  c.steps = {0, 10, 20, 40};
  c.acc = {0.1, 0.5, 0.7, 0.9};
  EXPECT_EQ(StepsToTarget(c, 0.5), 10);
  EXPECT_EQ(StepsToTarget(c, 0.05), 0);
  EXPECT_EQ(StepsToTarget(c, 0.95), -1);
  // (0.3·10 + 0.6·10 + 0.8·20) / 40
  EXPECT_DOUBLE_EQ(AreaUnderCurve(c), (3.0 + 6.0 + 16.0) / 40.0);
  LearningCurve one;
  one.steps = {0};
  one.acc = {0.4};
  EXPECT_DOUBLE_EQ(AreaUnderCurve(one), 0.4);
}

}  // namespace
}  // namespace tb
