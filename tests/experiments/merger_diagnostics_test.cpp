// What the merger logs while it trains (experiments/merge/merger_diagnostics.h): known answers on
// a hand-made layer, every key for the CNN, the rows a real store keeps, and no random draw.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "experiments/merge/merger_diagnostics.h"
#include "experiments/models/model.h"
#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

// One dense layer of two neurons with two inputs and a bias.
LossInputs TinyLayer() {
  LossInputs d;
  d.layer_bounds = {0, 4, 6};
  d.layer_shapes = {{2, 2}, {2}};
  d.layer_names = {"fc.weight", "fc.bias"};
  return d;
}

TEST(PredictionDiagnosticsTest, SpectraOfHandMadeLayers) {
  // Predicted W = diag(3, 4): singular values 4 and 3; target W = I: 1 and 1, effective rank 2.
  const auto predicted = torch::tensor({3.0, 0.0, 0.0, 4.0, 0.0, 0.0}, torch::kDouble);
  const auto target = torch::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0}, torch::kDouble);
  const auto s = LogPredictionDiagnostics(nullptr, predicted, target, TinyLayer(), 1);
  EXPECT_DOUBLE_EQ(s.at("spectrum/fc/top_predicted"), 4.0);
  EXPECT_DOUBLE_EQ(s.at("spectrum/fc/top_target"), 1.0);
  const double p = 4.0 / 7, q = 3.0 / 7;
  EXPECT_NEAR(s.at("spectrum/fc/effective_rank_predicted"), std::exp(-(p * std::log(p) + q * std::log(q))), 1e-12);
  EXPECT_NEAR(s.at("spectrum/fc/effective_rank_target"), 2.0, 1e-12);
  // Neurons (3, 0, 0) and (0, 4, 0) (incoming weights, bias): one finite H0 pair (0, 5); the
  // target's (1, 0, 0) and (0, 1, 0): (0, √2). Matched to each other they cost 5 − √2 = 3.59, each
  // to the diagonal max(5/2, √2/2) = 2.5: the bottleneck distance is the smaller.
  EXPECT_NEAR(s.at("topo/fc/bottleneck0"), 2.5, 1e-9);
  EXPECT_EQ(s.at("topo/fc/bottleneck1"), 0);
  EXPECT_NEAR(s.at("predicted/topo/fc/total_persistence0"), 5.0, 1e-12);
  EXPECT_NEAR(s.at("target/topo/fc/total_persistence0"), std::sqrt(2.0), 1e-12);
  // A vector of the wrong size, or an undescribed network, is refused.
  EXPECT_THROW(LogPredictionDiagnostics(nullptr, predicted.slice(0, 0, 5), target, TinyLayer(), 1), BadInput);
  EXPECT_THROW(LogPredictionDiagnostics(nullptr, predicted, target, LossInputs{}, 1), BadInput);
}

TEST(PredictionDiagnosticsTest, EveryCnnLayerLoggedAsRowsOfARealStore) {
  testing::TempDir dir;
  const std::string db = dir / "runs.db";
  std::string id;
  {
    RunStore store(db);
    NewRun r;
    r.method = "transformer_merge";
    r.config = {{"method", "transformer_merge"}};
    id = store.CreateRun(r);
  }
  LossInputs cnn;
  DescribeModel(cnn, ModelSpec{"cnn2464", "relu"});
  torch::manual_seed(3);
  const auto target = torch::randn({2464}, torch::kDouble) * 0.1;
  const auto predicted = target.clone();
  // No random number drawn: the generator is where it was.
  torch::manual_seed(11);
  const auto expected = torch::rand({4});
  torch::manual_seed(11);
  std::map<std::string, double> s;
  {
    SqliteLogger log(db, id);
    s = LogPredictionDiagnostics(&log, predicted, target, cnn, /*step=*/7);
    log.RunEnded(RunStatus::kFinished, 0, "");
  }
  EXPECT_TRUE(torch::rand({4}).equal(expected));

  // A perfect prediction: no bottleneck distance, the same spectra and topology on both sides.
  int layers = 0;
  for (const auto& [key, value] : s) {
    if (key.rfind("topo/", 0) == 0) EXPECT_EQ(value, 0) << key;
    if (key.size() > 10 && key.compare(key.size() - 10, 10, "_predicted") == 0) {
      const std::string twin = key.substr(0, key.size() - 10) + "_target";
      EXPECT_DOUBLE_EQ(value, s.at(twin)) << key;
    }
    if (key.rfind("predicted/topo/", 0) == 0) EXPECT_DOUBLE_EQ(value, s.at("target/" + key.substr(10))) << key;
    layers += key.rfind("spectrum/", 0) == 0 && key.find("/top_predicted") != std::string::npos;
  }
  EXPECT_EQ(layers, 5);  // the CNN's five weight layers

  RunStore store(db);
  std::map<std::string, MetricRow> rows;
  for (const auto& row : store.Metrics(id)) rows[row.key] = row;
  EXPECT_EQ(rows.size(), s.size() + 3 + 5 * 4 + 4);  // the scalars; the histograms
  for (const std::string key : {"merger/weights/predicted", "merger/weights/target", "merger/weights/residual",
                                "merger/persistence/h0/predicted", "merger/persistence/h1/target"}) {
    ASSERT_EQ(rows.count(key), 1u) << key;
    EXPECT_EQ(rows[key].step, 7);
    EXPECT_EQ(nlohmann::json::parse(rows[key].data).at("_type"), "histogram") << key;
  }
  EXPECT_EQ(rows["merger/weights/predicted"].value, 2464);
  // The residual of a perfect prediction: every sample in one bin.
  const auto residual = nlohmann::json::parse(rows["merger/weights/residual"].data).at("values").get<std::vector<int64_t>>();
  EXPECT_EQ(*std::max_element(residual.begin(), residual.end()), 2464);
  for (const auto& [key, value] : s) {
    ASSERT_EQ(rows.count("merger/" + key), 1u) << key;
    EXPECT_TRUE(rows["merger/" + key].data.empty());
    if (std::isfinite(value)) EXPECT_DOUBLE_EQ(rows["merger/" + key].value, value) << key;
  }
}

TEST(PredictionDiagnosticsTest, NetworkTopologyNamesTheLayers) {
  LossInputs cnn;
  DescribeModel(cnn, ModelSpec{"cnn2464", "relu"});
  torch::manual_seed(5);
  const auto d = NetworkTopology(torch::randn({2464}, torch::kDouble), cnn);
  EXPECT_EQ(d.size(), 5u * 7u);  // five weight layers, seven statistics each
  for (const auto& [key, value] : d) {
    EXPECT_EQ(key.rfind("topo/", 0), 0u) << key;
    EXPECT_EQ(key.find("layer"), std::string::npos) << key;  // the parameters' names, not layer0 ...
  }
}

}  // namespace
}  // namespace tb
