// The learned merger (experiments/merge/merger.h): its tokenisations, the zoo triples and their
// split, training, caching and the shuffled-target control, on a tiny grid built by the test.
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "experiments/merge/merger.h"
#include "store/errors.h"
#include "store/hash.h"
#include "tests/test_util.h"

namespace tb {
namespace {

// Three disjoint pairs of classes and the three unions of two of them: six triples.
const char* kTinyGrid = R"({"name": "tiny", "dataset": "mnist", "data.train_per_class": 12,
  "subsets": [[0, 1], [2, 3], [4, 5], [0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5]],
  "activations": ["relu"], "inits": ["kaiming_uniform"], "seeds": [0], "checkpoints": [1]})";

TEST(MergerTest, TokenisationsPartitionTheWeightVector) {
  const ModelSpec cnn{"cnn2464", "relu", "kaiming_uniform"};
  for (const std::string tokens : {"report", "neuron"}) {
    std::vector<torch::Tensor> flat;
    int64_t count = 0;
    for (const auto& g : Tokenisation(tokens, cnn)) {
      flat.push_back(g.reshape({-1}));
      count += g.size(0);
    }
    EXPECT_TRUE(std::get<0>(torch::sort(torch::cat(flat))).equal(torch::arange(2464, torch::kInt64))) << tokens;
    EXPECT_EQ(count, tokens == "report" ? 50 : 8 + 6 + 4 + 20 + 10) << tokens;
  }
  // The report's token sizes: 26 of 80, then 24 of 16.
  const auto report = Tokenisation("report", cnn);
  EXPECT_EQ(report[0].sizes(), (std::vector<int64_t>{26, 80}));
  EXPECT_EQ(report[1].sizes(), (std::vector<int64_t>{24, 16}));
  // Neuron tokens: conv1's first neuron is its 25 kernel weights and its bias (offset 200).
  const auto neuron = Tokenisation("neuron", cnn);
  EXPECT_EQ(neuron[0].sizes(), (std::vector<int64_t>{8, 26}));
  EXPECT_EQ(neuron[0][0][25].item<int64_t>(), 200);
  EXPECT_THROW(Tokenisation("report", ModelSpec{"wide", "relu", "default"}), BadInput);
}

TEST(MergerTest, SplitParsesTestPairsAndRefusesBadOnes) {
  MergerSplit s;
  s.test_pairs = "01+23;4+56";
  s.Check("split.");
  EXPECT_EQ(s.Of({0, 1, 2, 3}), "test");
  EXPECT_EQ(s.Of({4, 5, 6}), "test");
  EXPECT_NE(s.Of({0, 1, 4, 5}), "test");
  for (const std::string bad : {"01-23", "01+", "01+12", "0a+23"}) {
    MergerSplit b;
    b.test_pairs = bad;
    try {
      b.Check("split.");
      ADD_FAILURE() << bad << " accepted";
    } catch (const BadInput& e) {
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos) << e.what();
    }
  }
  // Without test pairs, a seeded hash: about the asked share of the 1,013 unions, stable per seed.
  MergerSplit h;
  h.Check("split.");
  int64_t test = 0;
  for (const auto& u : LoadZooGrid("report").subsets) test += h.Of(u) == "test";
  EXPECT_GT(test, 150);
  EXPECT_LT(test, 260);
}

TEST(MergerTest, TrainsOnTheTrainingTriplesCachesAndKeepsTheControlApart) {
  testing::TempDir dir;
  const std::string path = dir / "tiny.json";
  std::ofstream(path) << kTinyGrid;
  const ZooGrid grid = LoadZooGrid(path);
  ASSERT_EQ(BuildZooShard(grid, dir.path(), 0, 1, "cpu", "test-blas"), 6);
  RunStore store(dir / "runs.db");
  const std::string sha = LoadDataset(DataSpec{"mnist", ""}).sha256;
  MergerSplit split;
  split.val = 0;
  split.test_pairs = "01+23";
  split.Check("split.");
  const ZooTriples t = LoadZooTriples(store, grid, sha, "relu", "kaiming_uniform", 0, 1, split);
  // Test: (01, 23) and (23, 01); training: the four ordered pairs of the other two unions.
  EXPECT_EQ(t.test.size(), 2u);
  EXPECT_EQ(t.train.size(), 4u);
  EXPECT_EQ(t.models.sizes(), (std::vector<int64_t>{6, 2464}));
  for (const auto& tr : t.train) EXPECT_NE(t.model_classes[tr.u], (std::vector<int64_t>{0, 1, 2, 3}));
  MergerSplit none = split;
  none.test_pairs = "67+89";
  none.Check("split.");
  EXPECT_THROW(LoadZooTriples(store, grid, sha, "relu", "kaiming_uniform", 0, 1, none), BadInput);  // no test triple

  MergerRequest req;
  req.grid = &grid;
  req.dataset_sha256 = sha;
  req.activation = "relu";
  req.init = "kaiming_uniform";
  req.bin = 1;
  req.split = split;
  req.config.d_model = 16;
  req.config.d_ff = 16;
  req.config.neck = 8;
  req.training.epochs = 2;
  req.training.batch_size = 2;
  req.zoo_dir = dir / "zoo";
  const TrainedMerger a = GetMerger(req, t, store, nullptr);
  EXPECT_TRUE(a.trained);
  EXPECT_EQ(a.metrics.at("train_triples").get<int64_t>(), 4);
  const torch::Tensor w1 = t.models.index_select(0, torch::tensor({t.test[0].a})),
                      w2 = t.models.index_select(0, torch::tensor({t.test[0].b}));
  const torch::Tensor p = a.Predict(w1, w2);
  EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1, 2464}));
  EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  // Logged while it trains (into a run of a real store, its own cache directory): the curve and
  // the prediction diagnostics at epochs 1 and 2, the same weights, the same key.
  {
    MergerRequest logged = req;
    logged.zoo_dir = dir / "zoo-logged";
    logged.training.diagnose_every = 1;
    NewRun r;
    r.method = "transformer_merge";
    r.config = {{"method", "transformer_merge"}};
    const std::string id = store.CreateRun(r);
    TrainedMerger l;
    {
      SqliteLogger log(dir / "runs.db", id);
      l = GetMerger(logged, t, store, &log);
      log.RunEnded(RunStatus::kFinished, 0, "");
    }
    EXPECT_EQ(l.hash, a.hash);
    EXPECT_TRUE(l.Predict(w1, w2).equal(p));
    std::map<std::string, std::set<int64_t>> steps;
    for (const auto& row : store.Metrics(id)) steps[row.key].insert(row.step);
    for (const std::string key : {"merger/val_loss", "merger/weights/predicted", "merger/spectrum/conv1/predicted",
                                  "merger/spectrum/conv1/top_predicted", "merger/predicted/topo/conv1/betti0",
                                  "merger/topo/conv1/bottleneck0", "merger/persistence/h0/predicted"}) {
      EXPECT_EQ(steps[key], (std::set<int64_t>{1, 2})) << key;
    }
  }
  // Cached: the same request loads the same merger.
  const TrainedMerger b = GetMerger(req, t, store, nullptr);
  EXPECT_FALSE(b.trained);
  EXPECT_EQ(b.hash, a.hash);
  EXPECT_TRUE(b.Predict(w1, w2).equal(p));
  ASSERT_TRUE(store.GetModel(a.hash).has_value());
  // The shuffled-target control and another loss are other mergers.
  MergerRequest control = req;
  control.targets = "shuffled";
  EXPECT_NE(JsonHash(control.Spec()), a.hash);
  const TrainedMerger c = GetMerger(control, t, store, nullptr);
  EXPECT_TRUE(c.trained);
  EXPECT_FALSE(c.Predict(w1, w2).equal(p));
  // A metric-only or unknown loss is refused.
  MergerTraining bad;
  bad.loss = "no_such_loss";
  EXPECT_THROW(bad.Check("merger."), BadInput);
  // The losses on the merger's latents, and the report's composite of four, train it too.
  for (const std::string name : {"latent_consistency", "contrastive", "composite"}) {
    MergerRequest other = req;
    other.training.loss = name;
    other.training.epochs = 1;
    other.training.probe = 4;
    const TrainedMerger o = GetMerger(other, t, store, nullptr);
    EXPECT_TRUE(std::isfinite(o.metrics.at("val_loss").get<double>())) << name;
    EXPECT_TRUE(torch::isfinite(o.Predict(w1, w2)).all().item<bool>()) << name;
  }
  // Augmentation: permuted copies count as training triples.
  MergerRequest augmented = req;
  augmented.training.augment = 2;
  augmented.training.epochs = 1;
  EXPECT_EQ(GetMerger(augmented, t, store, nullptr).metrics.at("train_triples").get<int64_t>(), 12);
}

TEST(MergerTest, PermutingHiddenNeuronsKeepsTheFunction) {
  // What augment relies on: FromFlat(FlatWeights(m)) is m, and a neuron permutation keeps the logits.
  torch::manual_seed(3);
  const ModelSpec spec{"cnn2464", "tanh", "kaiming_uniform"};
  ModelPtr m = MakeModel(spec);
  const torch::Tensor x = torch::rand({4, 1, 28, 28});
  const torch::Tensor flat = FlatWeights(*m);
  EXPECT_TRUE(FromFlat(spec, flat, torch::kCPU)->forward(x).allclose(m->forward(x)));
  EXPECT_THROW(FromFlat(spec, flat.slice(0, 1), torch::kCPU), BadInput);
  const torch::Tensor perms = NeuronPermutations(spec, 3, 11);
  for (int64_t i = 0; i < 3; ++i) {
    const torch::Tensor permuted = flat.index_select(0, perms[i]);
    EXPECT_FALSE(permuted.equal(flat));
    EXPECT_TRUE(FromFlat(spec, permuted, torch::kCPU)->forward(x).allclose(m->forward(x), 1e-5, 1e-5)) << i;
  }
}

}  // namespace
}  // namespace tb
