#include <gtest/gtest.h>

#include "experiments/train/trainer.h"
#include "experiments/train/zoo.h"
#include "store/hash.h"
#include "tests/test_util.h"

namespace tb {
namespace {

std::pair<Split, Split> SmallData() {
  const Dataset& ds = LoadDataset(DataSpec{"mnist", ""});
  return ZooTrainingData(ds, {0, 1, 2, 3}, /*train_per_class=*/100, /*val_fraction=*/0.1, /*seed=*/1);
}

class RecordingLogger : public RunLogger {
 public:
  void Scalar(std::string_view key, double value, int64_t step) override { rows.push_back({step, std::string(key), value, 0}); }
  void Summary(const std::map<std::string, double>&) override {}
  void RunEnded(RunStatus, int, const std::string&) override {}
  std::vector<MetricRow> rows;
};

TEST(TrainerTest, SameSeedSameWeightsAndLossFalls) {
  auto [fit, val] = SmallData();
  TrainOptions opts;
  opts.epochs = 3;
  std::vector<torch::Tensor> weights;
  for (int i = 0; i < 2; ++i) {
    torch::manual_seed(5);
    auto m = MakeModel(ModelSpec{"wide"});
    RecordingLogger log;
    TrainResult r = Train(*m, fit, val, opts, /*seed=*/5, &log, "a/");
    EXPECT_EQ(r.epochs_run, 3);
    EXPECT_LT(r.loss.back(), r.loss.front());
    EXPECT_GT(r.val_acc.back(), 0.8);  // 4 well-separated digit classes
    EXPECT_EQ(log.rows.size(), 9u);    // loss, train_acc, val_acc per epoch
    EXPECT_EQ(log.rows[0].key, "a/loss");
    weights.push_back(m->head->weight.clone());
  }
  EXPECT_TRUE(torch::equal(weights[0], weights[1]));
}

TEST(TrainerTest, EarlyStoppingStopsOnAPlateau) {
  auto [fit, val] = SmallData();
  TrainOptions opts;
  opts.epochs = 40;
  opts.early_stopping = true;
  torch::manual_seed(1);
  auto m = MakeModel(ModelSpec{"wide"});
  TrainResult r = Train(*m, fit, val, opts, 1, nullptr, "");
  EXPECT_LT(r.epochs_run, 40);
  const auto n = r.val_acc.size();
  EXPECT_LE(std::abs(r.val_acc[n - 1] - r.val_acc[n - 3]), 0.0005 + 1e-12);
}

TEST(ZooTest, SecondRequestLoadsInsteadOfTraining) {
  testing::TempDir dir;
  RunStore store(dir / "runs.db");
  Zoo zoo(dir / "zoo", store);
  ZooRequest req;
  req.dataset = &LoadDataset(DataSpec{"mnist", ""});
  req.model = ModelSpec{"verydeep"};
  req.classes = {2, 3, 4, 5};
  req.seed = 11;
  req.train.epochs = 1;
  req.train_per_class = 60;
  ZooEntry first = zoo.Get(req, nullptr, "");
  EXPECT_TRUE(first.trained);
  EXPECT_TRUE(std::filesystem::exists(zoo.PathFor(first.hash)));
  ASSERT_TRUE(store.GetModel(first.hash));
  ZooEntry second = zoo.Get(req, nullptr, "");
  EXPECT_FALSE(second.trained);
  EXPECT_EQ(second.hash, first.hash);
  for (size_t i = 0; i < first.model->parameters().size(); ++i) {
    EXPECT_TRUE(torch::equal(first.model->parameters()[i], second.model->parameters()[i]));
  }
  // Everything that determines the weights is in the hash.
  ZooRequest other = req;
  other.train.epochs = 2;
  EXPECT_NE(other.Hash(), req.Hash());
  other = req;
  other.seed = 12;
  EXPECT_NE(other.Hash(), req.Hash());
  other = req;
  other.model.activation = "tanh";
  EXPECT_NE(other.Hash(), req.Hash());
  other = req;
  other.classes = {2, 3, 4};
  EXPECT_NE(other.Hash(), req.Hash());
  EXPECT_EQ(req.Spec()["trainer_version"], kTrainerVersion);
}

}  // namespace
}  // namespace tb
