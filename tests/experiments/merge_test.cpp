// Known answers of the merge math (experiments/merge/merging.h) and of the merge protocol's
// helpers, and every registered merge method run on a tiny scenario of real MNIST.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "experiments/merge/merging.h"
#include "experiments/methods/method.h"
#include "experiments/protocols/merge.h"
#include "experiments/protocols/protocol.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"

namespace tb {
namespace {

const ModelSpec kCnn{"cnn2464", "relu", "kaiming_uniform"};
const ModelSpec kWide{"wide", "relu", "kaiming_uniform"};

ModelPtr Seeded(const ModelSpec& spec, uint64_t seed) {
  torch::manual_seed(seed);
  ModelPtr m = MakeModel(spec);
  m->eval();
  return m;
}

void ExpectEqualWeights(const Weights& a, const Weights& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

void ExpectCloseWeights(const Weights& a, const Weights& b, double atol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, /*rtol=*/0, atol))
        << a[i].first << ": max difference " << (a[i].second - b[i].second).abs().max().item<double>();
  }
}

Weights OneTensor(std::vector<float> values) { return {{"w", torch::tensor(values)}}; }

// ---- The task-vector family ----

TEST(MergeMathTest, WeightAverageOfTwoIdenticalModelsIsThatModel) {
  ModelPtr m = Seeded(kCnn, 1);
  const Weights w = GetWeights(*m);
  ExpectEqualWeights(TaskVectorMerge({}, {w, w}, {"mean", 1.0, 1.0}), w);
  // And of two different models: their entry-wise mean.
  const Weights w2 = GetWeights(*Seeded(kCnn, 2));
  const Weights avg = TaskVectorMerge({}, {w, w2}, {"mean", 1.0, 1.0});
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_TRUE(torch::allclose(avg[i].second, (w[i].second + w2[i].second) / 2, 0, 1e-7)) << w[i].first;
  }
}

TEST(MergeMathTest, TaskArithmeticWithLambdaZeroIsTheBase) {
  const Weights base = GetWeights(*Seeded(kCnn, 1));
  const Weights w1 = GetWeights(*Seeded(kCnn, 2)), w2 = GetWeights(*Seeded(kCnn, 3));
  ExpectEqualWeights(TaskVectorMerge(base, {w1, w2}, {"sum", 0.0, 1.0}), base);
  // λ = 1: base + τ1 + τ2.
  const Weights sum = TaskVectorMerge(base, {w1, w2}, {"sum", 1.0, 1.0});
  for (size_t i = 0; i < base.size(); ++i) {
    const auto expected = base[i].second + (w1[i].second - base[i].second) + (w2[i].second - base[i].second);
    EXPECT_TRUE(torch::allclose(sum[i].second, expected, 0, 1e-6)) << base[i].first;
  }
  EXPECT_THROW(TaskVectorMerge(base, {w1, w2}, {"median", 1.0, 1.0}), BadInput);
}

TEST(MergeMathTest, TiesWithAgreeingSignsIsBasePlusLambdaMeanTaskVector) {
  const Weights base = GetWeights(*Seeded(kCnn, 1));
  torch::manual_seed(9);
  Weights d;
  for (const auto& [k, v] : base) d.emplace_back(k, torch::randn_like(v));
  const std::vector<double> c{0.5, 1.5, 2.0};
  std::vector<Weights> parents(c.size());
  for (size_t p = 0; p < c.size(); ++p) {
    for (size_t i = 0; i < base.size(); ++i) parents[p].emplace_back(base[i].first, base[i].second + c[p] * d[i].second);
  }
  const double lambda = 0.7;
  const Weights ties = TaskVectorMerge(base, parents, {"ties", lambda, 1.0});
  Weights expected;
  for (size_t i = 0; i < base.size(); ++i) {
    torch::Tensor mean_tau = torch::zeros_like(base[i].second);
    for (const auto& p : parents) mean_tau += (p[i].second - base[i].second) / static_cast<double>(parents.size());
    expected.emplace_back(base[i].first, base[i].second + lambda * mean_tau);
  }
  ExpectCloseWeights(ties, expected, 1e-6);
}

TEST(MergeMathTest, TiesTakesOnlyTheParentsThatAgreeWithTheElectedSign) {
  const Weights base = OneTensor({1, 1, 1, 1});
  // τ per entry: {1, 3, 2} all positive; {2, -1, -4} sum -3: -1, -4; {-3, 1, 1} sum -1: -3 alone;
  // {1, -1, 2} sum 2: 1, 2.
  const std::vector<Weights> parents{OneTensor({2, 3, -2, 2}), OneTensor({4, 0, 2, 0}), OneTensor({3, -3, 2, 3})};
  const Weights ties = TaskVectorMerge(base, parents, {"ties", 0.5, 1.0});
  ASSERT_EQ(ties.size(), 1u);
  const auto expected = torch::tensor({1 + 0.5f * 2.0f, 1 + 0.5f * -2.5f, 1 + 0.5f * -3.0f, 1 + 0.5f * 1.5f});
  EXPECT_TRUE(torch::allclose(ties[0].second, expected, 0, 1e-6)) << ties[0].second;
  // Trimming: density 0.5 keeps the two largest magnitudes of each task vector.
  const Weights one = TaskVectorMerge(OneTensor({0, 0, 0, 0}), {OneTensor({1, 2, -3, 1})}, {"ties", 1.0, 0.5});
  EXPECT_TRUE(torch::equal(one[0].second, torch::tensor({0.0f, 2.0f, -3.0f, 0.0f}))) << one[0].second;
}

// ---- Weight matching ----

// A random permutation of each hidden layer's units.
Permutations RandomPermutations(const std::vector<int64_t>& units, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Permutations perms;
  for (int64_t n : units) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
    perms.push_back(p);
  }
  return perms;
}

void ExpectWeightMatchingRecoversAPlantedPermutation(const ModelSpec& spec, const std::vector<int64_t>& units) {
  ModelPtr model1 = Seeded(spec, 3);
  const Permutations planted = RandomPermutations(units, 17);
  ModelPtr model2 = Permuted(*model1, planted);
  // A permuted model computes the same function, and differs in its weights.
  torch::manual_seed(4);
  const auto images = torch::rand({16, 1, 28, 28});
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(model1->forward(images), model2->forward(images), 1e-5, 1e-5));
  }
  bool moved = false;
  const Weights w1 = GetWeights(*model1), w2 = GetWeights(*model2);
  for (size_t i = 0; i < w1.size(); ++i) moved = moved || !torch::equal(w1[i].second, w2[i].second);
  EXPECT_TRUE(moved);
  // Aligning model 2 back to model 1 gives model 1 exactly.
  const Permutations found = WeightMatching(*model1, *model2, /*seed=*/1);
  ASSERT_EQ(found.size(), units.size());
  for (size_t l = 0; l < units.size(); ++l) {
    ASSERT_EQ(found[l].size(), static_cast<size_t>(units[l]));
    for (size_t a = 0; a < found[l].size(); ++a) EXPECT_EQ(planted[l][static_cast<size_t>(found[l][a])], static_cast<int64_t>(a));
  }
  ExpectEqualWeights(GetWeights(*Permuted(*model2, found)), w1);
  // A model matched with itself: the identity.
  for (const auto& p : WeightMatching(*model1, *model1, 2)) {
    for (size_t a = 0; a < p.size(); ++a) EXPECT_EQ(p[a], static_cast<int64_t>(a));
  }
}

TEST(MergeMathTest, WeightMatchingRecoversAPlantedPermutationOfTheCnn) {
  ExpectWeightMatchingRecoversAPlantedPermutation(kCnn, {8, 6, 4, 20});
}

TEST(MergeMathTest, WeightMatchingRecoversAPlantedPermutationOfTheMlp) {
  ExpectWeightMatchingRecoversAPlantedPermutation(kWide, {512, 128});
}

// ---- RegMean, Fisher, interpolation ----

std::vector<std::pair<std::string, torch::Tensor>> Grams(Classifier& model, const torch::Tensor& images) {
  std::vector<std::pair<std::string, torch::Tensor>> grams;
  const auto params = model.named_parameters();
  for (const LayerInput& in : LayerInputs(model, images)) {
    grams.emplace_back(in.name, InputGram(*params.find(in.name + ".weight"), in.input));
  }
  return grams;
}

// The largest difference of RegMean of two copies of `spec` (Gram matrices on random images)
// from the copy, over the entries that read inputs the images reach (`live_only`) or over every
// entry, relative to each layer's largest weight.
double RegMeanOfCopiesError(const ModelSpec& spec, double alpha, bool live_only) {
  ModelPtr m = Seeded(spec, 5);
  torch::manual_seed(6);
  // More images than an MLP's fc1 has inputs (785 with the bias), else its Gram matrix is singular;
  // a conv layer sees every image at many positions.
  const auto images = torch::rand({spec.arch == "cnn2464" ? 200 : 1000, 1, 28, 28});
  const auto grams = Grams(*m, images);
  EXPECT_EQ(grams.size(), m->HiddenLayerNames().size() + 1);
  EXPECT_EQ(grams.back().first, "head");
  const Weights w = GetWeights(*m);
  const Weights merged = RegMeanMerge({w, w}, {grams, grams}, alpha);
  EXPECT_EQ(merged.size(), w.size());
  const auto wm = GetWeights(*FromWeights(spec, merged, torch::kCPU));  // names and shapes fit
  double worst = 0;
  for (const auto& [layer, gram] : grams) {
    auto find = [&](const Weights& ws, const std::string& name) {
      for (const auto& [k, v] : ws) {
        if (k == name) return v;
      }
      ADD_FAILURE() << "no " << name;
      return torch::Tensor();
    };
    const auto weight = find(w, layer + ".weight"), bias = find(w, layer + ".bias");
    const auto out = weight.size(0);
    const auto a = torch::cat({weight.reshape({out, -1}), bias.unsqueeze(1)}, 1);
    const auto b = torch::cat({find(merged, layer + ".weight").reshape({out, -1}), find(merged, layer + ".bias").unsqueeze(1)}, 1);
    auto diff = (a - b).abs();
    if (live_only) diff = diff.index_select(1, torch::nonzero(torch::diag(gram) > 0).squeeze(1));
    worst = std::max(worst, diff.max().item<double>() / weight.abs().max().item<double>());
  }
  return worst;
}

TEST(MergeMathTest, RegMeanOfIdenticalParentsIsThatParent) {
  // tanh: no input of any layer is ever exactly 0, every Gram matrix has full rank.
  for (const char* arch : {"cnn2464", "wide"}) {
    for (double alpha : {0.9, 1.0}) {
      EXPECT_LE(RegMeanOfCopiesError(ModelSpec{arch, "tanh", "kaiming_uniform"}, alpha, false), 1e-4) << arch << " " << alpha;
    }
  }
}

TEST(MergeMathTest, RegMeanOfIdenticalParentsKeepsTheWeightsOfEveryLiveInput) {
  // relu: some units are never active on the images; the weights reading the others are kept
  // (1e-3: units active on few images leave small eigenvalues, where the ridge of RegMeanMerge
  // costs 1.4e-4 in wide).
  for (const ModelSpec& spec : {kCnn, kWide}) {
    for (double alpha : {0.9, 1.0}) EXPECT_LE(RegMeanOfCopiesError(spec, alpha, true), 1e-3) << spec.arch << " " << alpha;
  }
}

// RegMean's ridge pulls the weights of inputs the samples never reach (units dead on them) to 0,
// so even two identical parents do not merge to themselves; it should pull them to the parents'
// mean. Disabled until RegMeanMerge regularises toward the mean.
TEST(MergeMathTest, RegMeanOfIdenticalParentsKeepsTheWeightsOfDeadInputs) {
  for (const ModelSpec& spec : {kCnn, kWide}) {
    for (double alpha : {0.9, 1.0}) EXPECT_LE(RegMeanOfCopiesError(spec, alpha, false), 1e-4) << spec.arch << " " << alpha;
  }
}

TEST(MergeMathTest, InputGramAppendsTheConstantOne) {
  const auto x = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).reshape({2, 2});
  const auto g = InputGram(torch::zeros({5, 2}), x);
  const auto expected = torch::tensor({10.0, 14.0, 4.0, 14.0, 20.0, 6.0, 4.0, 6.0, 2.0}, torch::kDouble).reshape({3, 3});
  EXPECT_TRUE(torch::equal(g, expected)) << g;
}

TEST(MergeMathTest, FisherMergeWeighsByTheFishers) {
  const Weights w1 = GetWeights(*Seeded(kCnn, 1)), w2 = GetWeights(*Seeded(kCnn, 2));
  torch::manual_seed(3);
  Weights equal, informed, zero;
  for (const auto& [k, v] : w1) {
    equal.emplace_back(k, torch::rand_like(v) + 0.1);
    informed.emplace_back(k, torch::rand_like(v) + 0.1);
    zero.emplace_back(k, torch::zeros_like(v));
  }
  ExpectCloseWeights(FisherMerge({w1, w2}, {equal, equal}), TaskVectorMerge({}, {w1, w2}, {"mean", 1, 1}), 1e-6);
  ExpectCloseWeights(FisherMerge({w1, w2}, {informed, zero}), w1, 1e-6);
  ExpectCloseWeights(FisherMerge({w1, w2}, {zero, informed}), w2, 1e-6);
  // No parent informed: the plain mean.
  ExpectCloseWeights(FisherMerge({w1, w2}, {zero, zero}), TaskVectorMerge({}, {w1, w2}, {"mean", 1, 1}), 1e-6);
}

TEST(MergeMathTest, InterpolateEndsAtTheParents) {
  const Weights w1 = GetWeights(*Seeded(kCnn, 1)), w2 = GetWeights(*Seeded(kCnn, 2));
  ExpectEqualWeights(Interpolate(w1, w2, 0), w1);
  ExpectEqualWeights(Interpolate(w1, w2, 1), w2);
  ExpectCloseWeights(Interpolate(w1, w2, 0.5), TaskVectorMerge({}, {w1, w2}, {"mean", 1, 1}), 1e-7);
}

// ---- Marchenko-Pastur ----

TEST(MergeMathTest, MarchenkoPasturKeepsAGaussianMatrixInsideAndFindsASpike) {
  torch::manual_seed(11);
  const auto x = torch::randn({1000, 200}, torch::kDouble);
  const auto [outside, count] = MarchenkoPasturOutside(x);
  EXPECT_EQ(count, 200);
  EXPECT_LE(outside, 10);  // >= 95% inside
  const auto [outside_t, count_t] = MarchenkoPasturOutside(x.t());  // p × n is read as n × p
  EXPECT_EQ(count_t, 200);
  EXPECT_EQ(outside_t, outside);
  // A planted rank-1 spike of singular value 200 (eigenvalue ≈ 40 of XᵀX/n, far above the
  // bulk's edge of about 2.1).
  auto u = torch::randn({1000, 1}, torch::kDouble), v = torch::randn({200, 1}, torch::kDouble);
  u = u / u.norm();
  v = v / v.norm();
  const auto spiked = x + 200 * u.mm(v.t());
  EXPECT_GE(MarchenkoPasturOutside(spiked).first, 1);
  const auto eig = torch::linalg_eigvalsh(spiked.t().mm(spiked) / 1000, "L");
  EXPECT_GT(eig.max().item<double>(), 30);
}

TEST(MergeMathTest, WeightDiagnosticsCoverEveryLayer) {
  ModelPtr m = Seeded(kCnn, 1);
  const auto d = WeightDiagnostics(*m);
  for (const char* layer : {"conv1", "conv2", "conv3", "fc1", "head"}) {
    EXPECT_TRUE(d.count(std::string("weights/") + layer + "/std")) << layer;
    EXPECT_TRUE(d.count(std::string("mp/") + layer + "/outside")) << layer;
  }
  ASSERT_TRUE(d.count("mp/share_outside"));
  EXPECT_GE(d.at("mp/share_outside"), 0.0);
  EXPECT_LE(d.at("mp/share_outside"), 1.0);
}

// ---- The protocol's helpers ----

TEST(MergeProtocolTest, RotateByZeroIsTheIdentityAndByNinetyARot90) {
  torch::manual_seed(12);
  const auto images = torch::rand({3, 1, 28, 28});
  // 1e-5: the sampling grid's float coordinates are off pixel centres by up to ~28 ulp (2e-6 seen).
  EXPECT_TRUE(torch::allclose(Rotate(images, 0), images, 0, 1e-5)) << (Rotate(images, 0) - images).abs().max().item<double>();
  // 90°: out[r][c] = in[c][27 − r] (torch::rot90 with k = 1 over the image axes, counter-clockwise
  // as displayed with row 0 on top).
  const auto r90 = Rotate(images, 90);
  EXPECT_TRUE(torch::allclose(r90, torch::rot90(images, 1, {2, 3}), 0, 1e-5));
  EXPECT_TRUE(torch::allclose(r90, images.transpose(2, 3).flip({2}), 0, 1e-5));
  EXPECT_FALSE(torch::allclose(r90, torch::rot90(images, -1, {2, 3}), 0, 1e-2));
  EXPECT_NEAR(r90[0][0][0][0].item<double>(), images[0][0][0][27].item<double>(), 1e-5);
  // Flat images ([N, 784]) come back as [N, 1, 28, 28].
  EXPECT_EQ(Rotate(images.reshape({3, 784}), 0).sizes(), images.sizes());
}

TEST(MergeProtocolTest, ClassAccuracyRestrictsTheArgmax) {
  // Every sample's overall argmax is class 9; among {0, 1} it is the label.
  auto logits = torch::zeros({4, 10});
  logits.select(1, 9).fill_(5);
  const auto labels = torch::tensor(std::vector<int64_t>{0, 1, 1, 7});
  logits[0][0] = 2;
  logits[1][1] = 2;
  logits[2][0] = 3;  // sample 2: 0 beats 1 among {0, 1}
  logits[2][1] = 1;
  EXPECT_EQ(ClassAccuracy(logits, labels, {0, 1}), 0.0);
  EXPECT_NEAR(ClassAccuracy(logits, labels, {0, 1}, {0, 1}), 2.0 / 3.0, 1e-12);
  // Only labels in `classes` count: sample 3 (label 7) is not scored.
  EXPECT_NEAR(ClassAccuracy(logits, labels, {1}, {0, 1}), 0.5, 1e-12);
  // Restricted to {0, 1, 9}: 9 wins everywhere.
  EXPECT_EQ(ClassAccuracy(logits, labels, {0, 1}, {0, 1, 9}), 0.0);
}

TEST(MergeProtocolTest, ZooRequestsNameTheirInitSeedOnlyWhenSet) {
  ZooRequest r;
  r.dataset = &LoadDataset(DataSpec{"mnist", ""});
  r.model = kCnn;
  r.classes = {0, 1};
  r.seed = 1;
  EXPECT_EQ(r.init_seed, -1);
  EXPECT_FALSE(r.Spec().contains("init_seed"));  // older zoo keys stay unchanged
  ZooRequest a = r, b = r;
  a.init_seed = 7;
  b.init_seed = 7;
  b.seed = 2;
  ASSERT_TRUE(a.Spec().contains("init_seed"));
  EXPECT_EQ(a.Spec().at("init_seed"), 7);
  EXPECT_NE(a.Hash(), r.Hash());
  EXPECT_NE(a.Hash(), b.Hash());  // the batch order still differs
  ZooRequest zero = r;
  zero.init_seed = 0;
  EXPECT_TRUE(zero.Spec().contains("init_seed"));
  // The zoo seeds the initial weights with init_seed: one seed, one initial checkpoint.
  ExpectEqualWeights(GetWeights(*Seeded(kCnn, 7)), GetWeights(*Seeded(kCnn, 7)));
  const Weights w8 = GetWeights(*Seeded(kCnn, 8)), w7 = GetWeights(*Seeded(kCnn, 7));
  EXPECT_FALSE(torch::equal(w7.front().second, w8.front().second));
}

TEST(MergeProtocolTest, RegisteredWithItsOptionsAndRefusesOverlappingClasses) {
  auto run = Protocols().Find("merge").make();
  for (const char* key : {"classes_1", "classes_2", "dataset", "arch", "parents_init", "finetune.epochs", "shift.degrees"}) {
    EXPECT_TRUE(run->options().Has(key)) << key;
  }
  EXPECT_EQ(run->options().ToJson().at("classes_1"), nlohmann::json::parse("[0, 1, 2, 3, 4]"));
  run->CheckScenario();  // the defaults are a valid scenario
  run->options().Set("classes_1", "0,1");
  run->options().Set("classes_2", nlohmann::json::array({1, 2}));
  try {
    run->CheckScenario();
    FAIL() << "overlapping class sets accepted";
  } catch (const BadInput& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("classes_2=1,2"), std::string::npos) << what;
    EXPECT_NE(what.find("class 1"), std::string::npos) << what;
  }
  // The scenario's class lists are put in order.
  auto sorted = Protocols().Find("merge").make();
  sorted->options().Set("classes_1", "3,1");
  sorted->options().Set("classes_2", "9,5");
  sorted->CheckScenario();
  EXPECT_EQ(sorted->options().ToJson().at("classes_1"), nlohmann::json::parse("[1, 3]"));
  EXPECT_EQ(sorted->ScenarioName(), "C13-C59-shared");
}

// ---- Every merge method on a tiny scenario ----

class NullLogger : public RunLogger {
 public:
  void Scalar(std::string_view, double, int64_t) override {}
  void Summary(const std::map<std::string, double>&) override {}
  void RunEnded(RunStatus, int, const std::string&) override {}
};

Split Concat(const Split& a, const Split& b) { return {torch::cat({a.images, b.images}), torch::cat({a.labels, b.labels})}; }

// C1 = {0, 1}, C2 = {2, 3}: 40 training images per class (a tenth of them for validation), 50
// test images per class.
MergeData TinyData() {
  const Dataset& ds = LoadDataset(DataSpec{"mnist", ""});
  MergeData d;
  d.dataset = &ds;
  d.classes_1 = {0, 1};
  d.classes_2 = {2, 3};
  d.classes = {0, 1, 2, 3};
  std::tie(d.train_1, d.val_1) = CarveValidation(LimitPerClass(SelectClasses(ds.train, d.classes_1), 40), 0.1, 1);
  std::tie(d.train_2, d.val_2) = CarveValidation(LimitPerClass(SelectClasses(ds.train, d.classes_2), 40), 0.1, 2);
  d.train = Concat(d.train_1, d.train_2);
  d.val = Concat(d.val_1, d.val_2);
  d.test = LimitPerClass(SelectClasses(ds.test, d.classes), 50);
  return d;
}

// A parent: the initial checkpoint moved by a seeded random step (a stand-in for training).
ModelPtr Moved(const ModelPtr& init, uint64_t seed) {
  ModelPtr m = CloneModel(init);
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.add_(0.05 * torch::randn_like(p));
  m->eval();
  return m;
}

TEST(MergeMethodsTest, EveryMergeMethodRunsDeterministicallyAndLeavesTheParents) {
  const MergeData data = TinyData();
  ASSERT_EQ(data.train_1.size() + data.val_1.size(), 80);
  ASSERT_EQ(data.test.size(), 200);
  ModelPtr init = Seeded(kCnn, 1);
  ModelPtr parent1 = Moved(init, 2), parent2 = Moved(init, 3), union_model = Moved(init, 4);
  NullLogger log;
  std::vector<std::string> merge_methods;
  for (const auto& name : Methods().Names()) {
    auto method = Methods().Find(name).make();
    if (method->protocol() != "merge") continue;
    // The learned merger and its zoo_mean reference learn from a zoo grid: tests/experiments/merger_test.cpp.
    if (dynamic_cast<MergeMethod&>(*method).NeedsZooGrid()) continue;
    merge_methods.push_back(name);
    auto* merge = dynamic_cast<MergeMethod*>(method.get());
    ASSERT_NE(merge, nullptr) << name;
    if (name == "ties_merge") merge->options().Set("lambda", 0.8);  // task_arithmetic chooses λ on val
    auto run_once = [&](std::vector<Weights>& before, std::vector<Weights>& after) {
      MergeContext ctx{data, CloneModel(parent1), CloneModel(parent2), CloneModel(init), CloneModel(union_model),
                       torch::kCPU, log, 5};
      const std::vector<ModelPtr> given{ctx.parent1, ctx.parent2, ctx.init, ctx.union_model};
      for (const auto& m : given) before.push_back(GetWeights(*m));
      torch::manual_seed(5);
      MergeResult r = merge->Merge(ctx);
      for (const auto& m : given) after.push_back(GetWeights(*m));
      return r;
    };
    std::vector<Weights> before1, after1, before2, after2;
    MergeResult a = run_once(before1, after1);
    MergeResult b = run_once(before2, after2);
    for (size_t i = 0; i < before1.size(); ++i) {
      SCOPED_TRACE(name + ": model " + std::to_string(i) + " of the context");
      ExpectEqualWeights(after1[i], before1[i]);
      ExpectEqualWeights(after2[i], before2[i]);
    }
    ASSERT_EQ(static_cast<bool>(a.logits), static_cast<bool>(b.logits)) << name;
    if (a.logits) {
      EXPECT_EQ(name, "ensemble");
      const auto la = a.logits(data.test.images), lb = b.logits(data.test.images);
      EXPECT_EQ(la.sizes(), (std::vector<int64_t>{200, 10})) << name;
      EXPECT_TRUE(torch::equal(la, lb)) << name;
      const auto expected = (Logits(*parent1, data.test.images) + Logits(*parent2, data.test.images)) / 2;
      EXPECT_TRUE(torch::allclose(la, expected, 1e-5, 1e-6)) << name;
    } else {
      ASSERT_TRUE(a.model && b.model) << name;
      SCOPED_TRACE(name + ": the merged model");
      ExpectEqualWeights(GetWeights(*a.model), GetWeights(*b.model));
      const auto acc = ClassAccuracy(Logits(*a.model, data.test.images), data.test.labels, data.classes);
      EXPECT_GE(acc, 0.0);
      EXPECT_LE(acc, 1.0);
    }
    EXPECT_EQ(static_cast<bool>(a.aligned_parent2), name == "permutation_merge") << name;
    EXPECT_EQ(a.diagnostics, b.diagnostics) << name;
    const bool reference = name == "union_retrain" || name == "ensemble" || name == "init_control";
    EXPECT_EQ(merge->IsReference(), reference) << name;
  }
  EXPECT_EQ(merge_methods, (std::vector<std::string>{"ensemble", "fisher_merge", "init_control", "permutation_merge",
                                                     "regmean", "task_arithmetic", "ties_merge", "union_retrain",
                                                     "weight_average"}));
}

// Known answers of the methods on the same scenario: weight_average is the mean, union_retrain
// and init_control hand back their models, permutation_merge of parents sharing an init with a
// small step finds the identity (and is then weight_average).
TEST(MergeMethodsTest, MethodsGiveTheirKnownAnswers) {
  const MergeData data = TinyData();
  ModelPtr init = Seeded(kCnn, 1);
  ModelPtr parent1 = Moved(init, 2), parent2 = Moved(init, 3), union_model = Moved(init, 4);
  NullLogger log;
  auto merge = [&](const std::string& name, std::vector<std::pair<std::string, nlohmann::json>> options = {}) {
    auto method = Methods().Find(name).make();
    for (const auto& [k, v] : options) method->options().Set(k, v);
    MergeContext ctx{data, CloneModel(parent1), CloneModel(parent2), CloneModel(init), CloneModel(union_model),
                     torch::kCPU, log, 5};
    return dynamic_cast<MergeMethod&>(*method).Merge(ctx);
  };
  const Weights w1 = GetWeights(*parent1), w2 = GetWeights(*parent2), base = GetWeights(*init);
  const Weights mean = TaskVectorMerge({}, {w1, w2}, {"mean", 1, 1});
  ExpectEqualWeights(GetWeights(*merge("weight_average").model), mean);
  ExpectEqualWeights(GetWeights(*merge("union_retrain").model), GetWeights(*union_model));
  ExpectEqualWeights(GetWeights(*merge("init_control").model), base);
  MergeResult ta = merge("task_arithmetic", {{"lambda", 0.5}});
  EXPECT_EQ(ta.diagnostics.at("lambda"), 0.5);
  ExpectEqualWeights(GetWeights(*ta.model), TaskVectorMerge(base, {w1, w2}, {"sum", 0.5, 1}));
  MergeResult ta0 = merge("task_arithmetic", {{"lambda", 0.0}});
  ExpectEqualWeights(GetWeights(*ta0.model), base);
  // λ chosen on validation: one of the grid's points.
  MergeResult chosen = merge("task_arithmetic", {{"lambda.max", 1.0}, {"lambda.step", 0.25}});
  const double lambda = chosen.diagnostics.at("lambda");
  EXPECT_NEAR(lambda * 4, std::round(lambda * 4), 1e-9);
  EXPECT_GE(lambda, 0.0);
  EXPECT_LE(lambda, 1.0);
  ExpectEqualWeights(GetWeights(*chosen.model), TaskVectorMerge(base, {w1, w2}, {"sum", lambda, 1}));
  MergeResult ties = merge("ties_merge", {{"lambda", 1.0}, {"density", 0.3}});
  ExpectEqualWeights(GetWeights(*ties.model), TaskVectorMerge(base, {w1, w2}, {"ties", 1.0, 0.3}));
  MergeResult perm = merge("permutation_merge");
  EXPECT_EQ(perm.diagnostics.at("units_moved_share"), 0.0);
  ExpectEqualWeights(GetWeights(*perm.aligned_parent2), w2);
  ExpectEqualWeights(GetWeights(*perm.model), mean);
  MergeResult fisher = merge("fisher_merge", {{"samples", 8}});
  EXPECT_GT(fisher.diagnostics.at("fisher_share_1"), 0.0);
  EXPECT_LT(fisher.diagnostics.at("fisher_share_1"), 1.0);
  // Bad options are refused.
  EXPECT_THROW(merge("ties_merge", {{"density", 0}}), BadInput);
  EXPECT_THROW(merge("task_arithmetic", {{"lambda", -0.5}}), BadInput);
  EXPECT_THROW(merge("regmean", {{"alpha", 1.5}}), BadInput);
}

}  // namespace
}  // namespace tb
