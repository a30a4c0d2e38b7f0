// The KAN refinement of the learned merger (experiments/merge/refiner.h, methods/kan_refine.cpp):
// the B-spline basis, the KAN layer's gradients against finite differences, the control's matched
// parameter count, a KAN fitting a smooth function, and kan_refine / mlp_refine end to end on a
// tiny grid built by the test (training, caching, the shared pairs, bad options).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "experiments/merge/merger.h"
#include "experiments/merge/refiner.h"
#include "experiments/methods/method.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

TEST(RefinerTest, BSplineBasisIsANonNegativePartitionOfUnityInsideTheGrid) {
  for (const SplineGrid g : {SplineGrid{5, 3, 2.0}, SplineGrid{1, 1, 1.0}, SplineGrid{8, 5, 3.0}, SplineGrid{3, 2, 0.5}}) {
    const torch::Tensor x = torch::linspace(-g.range * 0.9999, g.range * 0.9999, 501, torch::kDouble);
    const torch::Tensor b = BSplineBasis(x, g);
    ASSERT_EQ(b.sizes(), (std::vector<int64_t>{501, g.Bases()}));
    EXPECT_LT((b.sum(1) - 1).abs().max().item<double>(), 1e-12) << g.intervals << " " << g.order;
    EXPECT_GE(b.min().item<double>(), 0.0);
    // Each basis function lives on order + 1 intervals: at most order + 1 are non-zero at a point.
    EXPECT_LE((b > 0).sum(1).max().item<int64_t>(), g.order + 1);
    // Beyond the extended grid every basis function is zero.
    const double h = 2 * g.range / static_cast<double>(g.intervals);
    const double outside = g.range + (g.order + 0.5) * h;
    EXPECT_EQ(BSplineBasis(torch::tensor({-outside, outside}, torch::kDouble), g).abs().max().item<double>(), 0.0);
  }
  // Order 1 on the grid {-1, 0, 1}: the hat functions, known at x = 0.25.
  const torch::Tensor hat = BSplineBasis(torch::tensor({0.25}, torch::kDouble), SplineGrid{2, 1, 1.0})[0];
  EXPECT_TRUE(hat.allclose(torch::tensor({0.0, 0.75, 0.25}, torch::kDouble)));
}

TEST(RefinerTest, KanLayerGradientsMatchFiniteDifferences) {
  torch::manual_seed(7);
  KanLayer layer(3, 2, SplineGrid{5, 3, 2.0});
  layer->to(torch::kDouble);
  {
    // Larger coefficients than the init, so the spline term matters.
    torch::NoGradGuard no_grad;
    layer->coefficients.normal_(0, 1);
  }
  const torch::Tensor x = (torch::rand({4, 3}, torch::kDouble) * 3.6 - 1.8).requires_grad_(true);
  const torch::Tensor probe = torch::randn({4, 2}, torch::kDouble);
  auto loss = [&](const torch::Tensor& input) { return (layer->forward(input) * probe).sum(); };
  loss(x).backward();
  const torch::Tensor gx = x.grad().clone(), gc = layer->coefficients.grad().clone();
  const double eps = 1e-6;
  torch::NoGradGuard no_grad;
  auto check = [&](torch::Tensor target, const torch::Tensor& grad, const std::string& what, const torch::Tensor& input) {
    auto flat = target.view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double saved = flat[i].item<double>();
      flat[i] = saved + eps;
      const double up = loss(input).item<double>();
      flat[i] = saved - eps;
      const double down = loss(input).item<double>();
      flat[i] = saved;
      EXPECT_NEAR(grad.view({-1})[i].item<double>(), (up - down) / (2 * eps), 1e-6) << what << " entry " << i;
    }
  };
  const torch::Tensor xd = x.detach().clone();
  check(xd, gx, "input", xd);
  check(layer->coefficients.detach(), gc, "coefficient", xd);
  EXPECT_GT(gc.abs().sum().item<double>(), 0.0);
}

TEST(RefinerTest, TheControlMlpMatchesTheKanParameterCount) {
  const SplineGrid g;
  // cnn2464's neuron tokens: conv1 26, conv2 201, conv3 25, fc1 37, head 21.
  for (int64_t d : {26, 201, 25, 37, 21}) {
    const std::vector<int64_t> widths{d, 4, d};
    Kan kan(widths, g);
    const int64_t k = KanParameterCount(widths, g);
    EXPECT_EQ(CountParameters(*kan), k) << d;
    EXPECT_EQ(k, 80 * d) << d;  // 8d edges of 2 + (5 + 3) parameters
    const int64_t h = MatchedMlpHidden(d, d, k);
    RefineMlp mlp(d, h, d);
    EXPECT_EQ(CountParameters(*mlp), MlpParameterCount(d, h, d)) << d;
    EXPECT_LT(std::abs(static_cast<double>(CountParameters(*mlp) - k)) / static_cast<double>(k), 0.1) << d << " hidden " << h;
    // The closest width: one more or one fewer is no closer.
    EXPECT_LE(std::llabs(MlpParameterCount(d, h, d) - k), std::llabs(MlpParameterCount(d, h + 1, d) - k));
    if (h > 1) {
      EXPECT_LE(std::llabs(MlpParameterCount(d, h, d) - k), std::llabs(MlpParameterCount(d, h - 1, d) - k));
    }
  }
  RefinerOptions o;
  const ModelSpec spec{"cnn2464", "relu", "kaiming_uniform"};
  const double kan = static_cast<double>(CountParameters(*WeightRefiner("kan", spec, o)));
  const double mlp = static_cast<double>(CountParameters(*WeightRefiner("mlp", spec, o)));
  EXPECT_EQ(kan, 80.0 * (26 + 201 + 25 + 37 + 21));
  EXPECT_LT(std::abs(mlp - kan) / kan, 0.1);
  EXPECT_THROW(WeightRefiner("transformer", spec, o), BadInput);
}

TEST(RefinerTest, AKanFitsASmoothFunction) {
  torch::manual_seed(1);
  Kan kan(std::vector<int64_t>{1, 4, 1}, SplineGrid{});
  const torch::Tensor x = torch::linspace(-2, 2, 200).unsqueeze(1), y = torch::sin(2 * x);
  auto mse = [&] { return (kan->forward(x) - y).pow(2).mean(); };
  const double before = mse().item<double>();
  torch::optim::Adam adam(kan->parameters(), torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 400; ++step) {
    adam.zero_grad();
    torch::Tensor l = mse();
    l.backward();
    adam.step();
  }
  const double after = mse().item<double>();
  EXPECT_GT(before, 0.1);  // sin(2x) has variance ≈ 0.5 here: the untrained KAN is far from it
  EXPECT_LT(after, 0.01) << "from " << before;
}

// ---- kan_refine and mlp_refine on a tiny grid ----

// Three disjoint pairs of classes and the three unions of two of them: six triples (merger_test.cpp's).
const char* kTinyGrid = R"({"name": "tiny", "dataset": "mnist", "data.train_per_class": 12,
  "subsets": [[0, 1], [2, 3], [4, 5], [0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5]],
  "activations": ["relu"], "inits": ["kaiming_uniform"], "seeds": [0], "checkpoints": [1]})";

class CountingLogger : public RunLogger {
 public:
  void Scalar(std::string_view key, double, int64_t) override { ++counts[std::string(key)]; }
  void Summary(const std::map<std::string, double>&) override {}
  void RunEnded(RunStatus, int, const std::string&) override {}
  std::map<std::string, int64_t> counts;
};

int64_t FilesStartingWith(const std::string& dir, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path().filename().string().rfind(prefix, 0) == 0;
  return n;
}

TEST(RefinerTest, KanAndMlpRefineTrainCacheAndShareTheirPairs) {
  testing::TempDir dir;
  const std::string path = dir / "tiny.json";
  std::ofstream(path) << kTinyGrid;
  const ZooGrid grid = LoadZooGrid(path);
  ASSERT_EQ(BuildZooShard(grid, dir.path(), 0, 1, "cpu", "test-blas"), 6);
  RunStore store(dir / "runs.db");
  const std::string sha = LoadDataset(DataSpec{"mnist", ""}).sha256;
  const MergeZooSource zoo{&grid, 1, sha, "relu", "kaiming_uniform", 0, &store, dir / "zoo", 1, "test-blas", "trained"};
  MergerSplit split;
  split.test_pairs = "01+23";
  split.Check("split.");
  const ZooTriples t = LoadZooTriples(store, grid, sha, "relu", "kaiming_uniform", 0, 1, split);
  auto row = [&](const std::vector<int64_t>& classes) {
    for (size_t i = 0; i < t.model_classes.size(); ++i) {
      if (t.model_classes[i] == classes) return FromFlat(t.spec, t.models[static_cast<int64_t>(i)], torch::kCPU);
    }
    throw std::logic_error("no such model");
  };
  const ModelPtr parent1 = row({0, 1}), parent2 = row({2, 3}), union_model = row({0, 1, 2, 3});
  const MergeData data{};
  const std::vector<std::pair<std::string, std::string>> options = {
      {"merger.d_model", "16"}, {"merger.d_ff", "16"},  {"merger.neck", "8"},   {"merger.epochs", "2"},
      {"merger.batch_size", "2"}, {"split.test_pairs", "01+23"}, {"refine.steps", "3"}, {"refine.epochs", "25"}};
  auto make = [&](const std::string& name, const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    auto method = Methods().Find(name).make();
    for (const auto& [k, v] : options) {
      if (method->options().Has(k)) method->options().SetText(k, v);
    }
    for (const auto& [k, v] : extra) method->options().SetText(k, v);
    return method;
  };
  auto merge = [&](Method& method, CountingLogger& log, const MergeZooSource& source) {
    auto& m = dynamic_cast<MergeMethod&>(method);
    m.Check();
    m.CheckPair({0, 1}, {2, 3});
    MergeContext ctx{data, CloneModel(parent1), CloneModel(parent2), CloneModel(parent1), CloneModel(union_model),
                     torch::kCPU, log, 0, &source};
    return m.Merge(ctx);
  };

  // transformer_merge first: kan_refine must find its cached merger.
  CountingLogger log0;
  auto tm = make("transformer_merge");
  EXPECT_EQ(merge(*tm, log0, zoo).diagnostics.at("merger_cached"), 0);

  CountingLogger log1;
  auto kan = make("kan_refine");
  auto& kan_method = dynamic_cast<MergeMethod&>(*kan);
  EXPECT_TRUE(kan_method.NeedsZooGrid());
  EXPECT_THROW(kan_method.CheckPair({0, 1}, {4, 5}), BadInput);  // a training union
  const MergeResult a = merge(*kan, log1, zoo);
  const auto& d = a.diagnostics;
  EXPECT_EQ(d.at("merger_cached"), 1);
  EXPECT_EQ(d.at("refine_cached"), 0);
  EXPECT_EQ(d.at("refine_pairs_computed"), 1);
  EXPECT_EQ(d.at("refine_pairs"), 4);  // the four training triples (pairs 48 asked)
  EXPECT_EQ(d.at("refine_val_pairs"), 1);
  EXPECT_EQ(d.at("refine_parameters"), 80.0 * (26 + 201 + 25 + 37 + 21));
  EXPECT_GT(d.at("refine_move_mse"), 0.0);
  EXPECT_TRUE(std::isfinite(d.at("refine_val_mse")));
  EXPECT_GT(d.at("refine_val_mse_none"), 0.0);
  EXPECT_GT(d.at("refine_val_mse_mean"), 0.0);
  EXPECT_GE(d.at("refine_best_epoch"), 1);
  EXPECT_GT(d.at("refine_delta_mse"), 0.0);
  EXPECT_EQ(log1.counts["refine/train_loss"], 25);
  EXPECT_EQ(log1.counts["refine/val_loss"], 25);
  ASSERT_TRUE(a.model);
  EXPECT_TRUE(torch::isfinite(FlatWeights(*a.model)).all().item<bool>());
  EXPECT_EQ(FilesStartingWith(dir / "zoo", "refine-pairs-"), 1);
  EXPECT_EQ(FilesStartingWith(dir / "zoo", "refiner-"), 1);

  // A second run loads the refiner and gives the same model and diagnostics.
  CountingLogger log2;
  const MergeResult b = merge(*make("kan_refine"), log2, zoo);
  EXPECT_EQ(b.diagnostics.at("refine_cached"), 1);
  EXPECT_EQ(b.diagnostics.at("refine_pairs_computed"), 0);
  EXPECT_EQ(b.diagnostics.at("refine_val_mse"), d.at("refine_val_mse"));
  EXPECT_TRUE(FlatWeights(*b.model).equal(FlatWeights(*a.model)));
  EXPECT_EQ(log2.counts.count("refine/train_loss"), 0u);

  // The control: its own refiner on the same pairs, of about the same size.
  CountingLogger log3;
  const MergeResult c = merge(*make("mlp_refine"), log3, zoo);
  EXPECT_EQ(c.diagnostics.at("refine_cached"), 0);
  EXPECT_EQ(c.diagnostics.at("refine_pairs_computed"), 0);
  EXPECT_EQ(c.diagnostics.at("refine_move_mse"), d.at("refine_move_mse"));
  EXPECT_EQ(c.diagnostics.at("refine_val_mse_none"), d.at("refine_val_mse_none"));
  EXPECT_LT(std::abs(c.diagnostics.at("refine_parameters") - d.at("refine_parameters")) / d.at("refine_parameters"), 0.1);
  EXPECT_FALSE(FlatWeights(*c.model).equal(FlatWeights(*a.model)));
  EXPECT_EQ(FilesStartingWith(dir / "zoo", "refine-pairs-"), 1);
  EXPECT_EQ(FilesStartingWith(dir / "zoo", "refiner-"), 2);

  // Other fine-tuning steps: other pairs.
  CountingLogger log4;
  EXPECT_EQ(merge(*make("kan_refine", {{"refine.steps", "2"}, {"refine.epochs", "2"}}), log4, zoo)
                .diagnostics.at("refine_pairs_computed"), 1);
  EXPECT_EQ(FilesStartingWith(dir / "zoo", "refine-pairs-"), 2);

  // The controls of the run level are refused, naming the value.
  for (const std::string source : {"shuffled", "random"}) {
    MergeZooSource other = zoo;
    other.source = source;
    CountingLogger log;
    try {
      merge(*make("kan_refine"), log, other);
      ADD_FAILURE() << source << " accepted";
    } catch (const BadInput& e) {
      EXPECT_NE(std::string(e.what()).find("source=" + source), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("expected source=trained"), std::string::npos) << e.what();
    }
  }
}

TEST(RefinerTest, BadOptionsAreRefusedNamingTheValue) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"refine.pairs", "1"},   {"refine.steps", "0"},
                                                        {"refine.hidden", "0"},  {"refine.grid", "0"},
                                                        {"refine.order", "0"},   {"refine.order", "6"},
                                                        {"refine.epochs", "0"},  {"refine.lr", "0"},
                                                        {"refine.finetune_lr", "1.5"}, {"refine.val", "1"},
                                                        {"refine.range", "-1"}}) {
    for (const std::string name : {"kan_refine", "mlp_refine"}) {
      auto method = Methods().Find(name).make();
      method->options().SetText(key, value);
      try {
        dynamic_cast<MergeMethod&>(*method).Check();
        ADD_FAILURE() << name << " accepted " << key << "=" << value;
      } catch (const BadInput& e) {
        EXPECT_NE(std::string(e.what()).find(key + "=" + value), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("expected"), std::string::npos) << e.what();
      }
    }
  }
  // The defaults pass; the merger's own options are checked too.
  auto method = Methods().Find("kan_refine").make();
  EXPECT_NO_THROW(dynamic_cast<MergeMethod&>(*method).Check());
  method->options().SetText("merger.heads", "3");
  EXPECT_THROW(dynamic_cast<MergeMethod&>(*method).Check(), BadInput);
}

}  // namespace
}  // namespace tb
