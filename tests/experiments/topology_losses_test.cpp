// Known answers of the persistence computations (experiments/losses/topology.h) and the
// topological losses (topology_losses.cpp), and their autograd gradients against central finite
// differences.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "experiments/losses/topology.h"
#include "store/errors.h"

namespace tb {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;
using Diagram = std::vector<std::pair<double, double>>;

const std::vector<std::string> kTopologyLosses = {"bottleneck", "persistence", "multipersistence"};

torch::Tensor Points(const std::vector<std::vector<double>>& rows) {
  std::vector<torch::Tensor> r;
  for (const auto& row : rows) r.push_back(torch::tensor(row, torch::kDouble));
  return torch::stack(r);
}

std::vector<double> Deaths(const Persistence& p, int dim) {
  std::vector<double> d;
  for (const auto& [birth, death] : FinitePairs(p, dim)) d.push_back(death);
  std::sort(d.begin(), d.end());
  return d;
}

int64_t Essential(const Persistence& p, int dim) {
  return std::count_if(p.pairs.begin(), p.pairs.end(), [&](const PersistencePair& q) { return q.dim == dim && q.Essential(); });
}

TEST(TopologyTest, ThreeCollinearPointsMergeAtTheirGaps) {
  const Persistence p = RipsPersistence(Points({{0}, {1}, {3}}));
  EXPECT_EQ(Deaths(p, 0), (std::vector<double>{1, 2}));
  EXPECT_EQ(Essential(p, 0), 1);
  EXPECT_TRUE(FinitePairs(p, 1).empty());
  for (const auto& [birth, death] : FinitePairs(p, 0)) EXPECT_EQ(birth, 0);
}

TEST(TopologyTest, ASquareHasOneLoopFromItsSideToItsDiagonal) {
  const auto square = Points({{0, 0}, {1, 0}, {1, 1}, {0, 1}});
  const Persistence p = RipsPersistence(square);
  EXPECT_EQ(Deaths(p, 0), (std::vector<double>{1, 1, 1}));
  const Diagram h1 = FinitePairs(p, 1);
  ASSERT_EQ(h1.size(), 1u);
  EXPECT_DOUBLE_EQ(h1[0].first, 1.0);
  EXPECT_DOUBLE_EQ(h1[0].second, std::sqrt(2.0));
  EXPECT_EQ(Essential(p, 1), 0);
  // Edges no longer than 1.2: the diagonals never come, the loop never dies.
  const Persistence cut = RipsPersistence(square, /*max_edge=*/1.2);
  EXPECT_TRUE(FinitePairs(cut, 1).empty());
  EXPECT_EQ(Essential(cut, 1), 1);
  // The differentiable diagram is the same pairs, from the points' distances.
  const auto x = square.clone().requires_grad_(true);
  const auto d1 = DiagramPoints(x, {}, p, 1);
  ASSERT_EQ(d1.size(0), 1);
  EXPECT_NEAR(d1[0][0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(d1[0][1].item<double>(), std::sqrt(2.0), 1e-12);
  EXPECT_TRUE(d1.requires_grad());
  EXPECT_EQ(DiagramPoints(x, {}, p, 0).size(0), 3);
  EXPECT_EQ(DiagramPoints(x, {}, p, 0, torch::tensor(5.0, torch::kDouble)).size(0), 4);  // the essential class, dying at 5
}

TEST(TopologyTest, BottleneckDistanceOfHandMadeDiagrams) {
  EXPECT_DOUBLE_EQ(BottleneckDistance({{0, 1}}, {{0, 1.5}}), 0.5);
  EXPECT_DOUBLE_EQ(BottleneckDistance({{0, 4}}, {}), 2.0);  // to the diagonal: (death − birth)/2
  EXPECT_DOUBLE_EQ(BottleneckDistance({}, {{0, 4}}), 2.0);
  // Across costs 10; both to the diagonal cost 1 each.
  EXPECT_DOUBLE_EQ(BottleneckDistance({{0, 2}}, {{10, 12}}), 1.0);
  // (0, 3) to (0, 3.2) costs 0.2, then (0, 1) to the diagonal 0.5.
  EXPECT_NEAR(BottleneckDistance({{0, 1}, {0, 3}}, {{0, 3.2}}), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(BottleneckDistance({}, {}), 0.0);
  EXPECT_DOUBLE_EQ(BottleneckDistance({{0, 1}, {2, 5}}, {{0, 1}, {2, 5}}), 0.0);
}

TEST(TopologyTest, SlicedWassersteinKnownAnswer) {
  const auto one = torch::tensor({{0.0, 1.0}}, torch::kDouble), none = torch::zeros({0, 2}, torch::kDouble);
  // (0, 1) against its diagonal projection (½, ½): ½ |sin θ − cos θ| on the line θ; its mean over
  // (−π/2, π/2) is √2/π.
  const double pi = std::acos(-1.0);
  EXPECT_NEAR(SlicedWasserstein(one, none, 2000).item<double>(), std::sqrt(2.0) / pi, 1e-6);
  EXPECT_NEAR(SlicedWasserstein(none, one, 2000).item<double>(), std::sqrt(2.0) / pi, 1e-6);
  const auto two = torch::tensor({{0.0, 1.0}, {0.5, 3.0}}, torch::kDouble);
  EXPECT_NEAR(SlicedWasserstein(two, two, 16).item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(SlicedWasserstein(two, one, 16).item<double>(), SlicedWasserstein(one, two, 16).item<double>(), 1e-12);
  EXPECT_EQ(SlicedWasserstein(none, none, 16).item<double>(), 0.0);
  // λ_1 of {(0, 2)} is the tent of height 1 at t = 1; λ_2 is 0.
  const auto l = Landscapes(torch::tensor({{0.0, 2.0}}, torch::kDouble), 2, torch::tensor({0.5, 1.0, 3.0}, torch::kDouble));
  EXPECT_TRUE(torch::allclose(l, torch::tensor({{0.5, 1.0, 0.0}, {0.0, 0.0, 0.0}}, torch::kDouble)));
}

TEST(TopologyTest, NeuronPointCloudsOfTheCnn) {
  LossInputs in;
  DescribeModel(in, ModelSpec{"cnn2464", "relu", "kaiming_uniform"});
  const auto w = torch::arange(2464, torch::kDouble);
  const auto clouds = NeuronPointClouds(w, in.layer_shapes);
  // conv1 [8, 1, 5, 5] + bias, conv2 [6, 8, 5, 5], conv3 [4, 6, 2, 2], fc1 [20, 36], head [10, 20].
  const std::vector<std::vector<int64_t>> sizes = {{8, 26}, {6, 201}, {4, 25}, {20, 37}, {10, 21}};
  ASSERT_EQ(clouds.size(), sizes.size());
  for (size_t l = 0; l < sizes.size(); ++l) EXPECT_EQ(clouds[l].points.sizes().vec(), sizes[l]) << l;
  EXPECT_EQ(clouds[0].points[1][0].item<double>(), 25);   // neuron 1's first weight
  EXPECT_EQ(clouds[0].points[1][25].item<double>(), 201);  // its bias, after conv1's 200 weights
  EXPECT_THROW(NeuronPointClouds(w, {}), BadInput);
  EXPECT_THROW(NeuronPointClouds(w.slice(0, 0, 2000), in.layer_shapes), BadInput);
}

LossInputs RandomCnns(int64_t batch, uint64_t seed) {
  torch::manual_seed(seed);
  LossInputs in;
  DescribeModel(in, ModelSpec{"cnn2464", "relu", "kaiming_uniform"});
  in.predicted = 0.2 * torch::randn({batch, 2464}, torch::kDouble);
  in.target = 0.2 * torch::randn({batch, 2464}, torch::kDouble);
  return in;
}

double Value(const std::string& name, const LossInputs& in, const Settings& set = {}) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  return loss->Compute(in).item<double>();
}

TEST(TopologyLossTest, ZeroForIdenticalNetworksAndSymmetric) {
  LossInputs in = RandomCnns(2, 0);
  for (const auto& name : kTopologyLosses) {
    LossInputs same = in, swapped = in;
    same.target = in.predicted.clone();
    swapped.predicted = in.target;
    swapped.target = in.predicted;
    EXPECT_NEAR(Value(name, same), 0.0, 1e-12) << name;
    const double ab = Value(name, in);
    EXPECT_GT(ab, 0.01) << name;
    EXPECT_NEAR(ab, Value(name, swapped), 1e-10 * ab) << name;
  }
}

TEST(TopologyLossTest, ABatchIsTheMeanOfItsRows) {
  const LossInputs in = RandomCnns(3, 6);
  for (const auto& name : kTopologyLosses) {
    double rows = 0;
    for (int64_t b = 0; b < 3; ++b) {
      LossInputs one = in;
      one.predicted = in.predicted[b];
      one.target = in.target[b];
      rows += Value(name, one) / 3;
    }
    EXPECT_NEAR(Value(name, in), rows, 1e-10 * rows) << name;
  }
}

TEST(TopologyLossTest, CoincidentNeuronsGiveFiniteValuesAndGradients) {
  // All-zero predicted weights: every distance 0, every diagram point on the diagonal.
  LossInputs in = RandomCnns(1, 5);
  for (const auto& name : kTopologyLosses) {
    auto p = torch::zeros_like(in.predicted).requires_grad_(true);
    in.predicted = p;
    const auto value = Losses().Find(name).make()->Compute(in);
    EXPECT_TRUE(std::isfinite(value.item<double>())) << name;
    if (name == "bottleneck") continue;
    value.backward();
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>()) << name;
  }
  const auto d = TopologyDiagnostics(torch::zeros({2464}, torch::kDouble), in.layer_shapes);
  EXPECT_EQ(d.at("topo/layer0/betti0"), 1);
  EXPECT_EQ(d.at("topo/layer0/mapper_components"), 1);
}

TEST(TopologyLossTest, BottleneckOfAOneLayerNetworkMatchesTheHandAnswer) {
  // Three neurons of one input each, no bias: H0 deaths {1, 2} against {1, 3}; 2 to 3 costs 1,
  // both to the diagonal would cost 1.5.
  LossInputs in;
  in.layer_shapes = {{3, 1}};
  in.predicted = torch::tensor({0.0, 1.0, 3.0}, torch::kDouble);
  in.target = torch::tensor({0.0, 1.0, 4.0}, torch::kDouble).requires_grad_(true);
  EXPECT_NEAR(Value("bottleneck", in, {{"dims", "0"}}), 1.0, 1e-12);
  EXPECT_NEAR(Value("bottleneck", in), 1.0, 1e-12);  // no loops in either
  // A metric for logging: no gradient, even for inputs that have one.
  in.predicted = in.predicted.clone().requires_grad_(true);
  EXPECT_FALSE(Losses().Find("bottleneck").make()->Compute(in).requires_grad());
}

TEST(TopologyLossTest, RefusesMissingLayerShapesAndBadOptions) {
  const LossInputs cnn = RandomCnns(1, 1);
  for (const auto& name : kTopologyLosses) {
    LossInputs in = cnn;
    in.layer_shapes.clear();
    try {
      Value(name, in);
      ADD_FAILURE() << name << ": no BadInput without layer shapes";
    } catch (const BadInput& e) {
      EXPECT_NE(std::string(e.what()).find("DescribeModel"), std::string::npos) << e.what();
    }
    in.layer_shapes = {{8, 26}};  // not the vector's layout
    EXPECT_THROW(Value(name, in), BadInput) << name;
    for (const Settings& set : std::vector<Settings>{{{"dims", "2"}}, {{"dims", "0,-1"}}, {{"max_edge", "-1"}}}) {
      EXPECT_THROW(Value(name, cnn, set), BadInput) << name << " " << set[0].first;
    }
  }
  EXPECT_THROW(Value("persistence", cnn, {{"directions", "0"}}), BadInput);
  for (const Settings& set : std::vector<Settings>{{{"lines", "0"}}, {{"landscapes", "0"}}, {{"resolution", "1"}},
                                                   {{"neighbours", "0"}}, {{"neighbours", "4"}}}) {  // conv3 has 4 neurons
    EXPECT_THROW(Value("multipersistence", cnn, set), BadInput) << set[0].first;
  }
  EXPECT_THROW(Value("multipersistence", cnn, {{"function", "density"}}), BadInput);
}

TEST(TopologyLossTest, GradientsMatchFiniteDifferences) {
  // Two small layers (6 neurons of 3 inputs, 4 of 6), random: points in general position, so no
  // pairing changes within ±h.
  torch::manual_seed(3);
  LossInputs in;
  in.layer_shapes = {{6, 3}, {6}, {4, 6}, {4}};
  in.layer_bounds = {0, 18, 24, 48, 52};
  in.target = torch::randn({2, 52}, torch::kDouble);
  const auto p0 = torch::randn({2, 52}, torch::kDouble);
  for (const auto& [name, set] : std::vector<std::pair<std::string, Settings>>{
           {"persistence", {}}, {"multipersistence", {}}, {"multipersistence", {{"function", "norm"}, {"lines", "2"}}}}) {
    auto loss = Losses().Find(name).make();
    for (const auto& [k, v] : set) loss->options().SetText(k, v);
    auto p = p0.clone().requires_grad_(true);
    in.predicted = p;
    loss->Compute(in).backward();
    const auto grad = p.grad().clone();
    EXPECT_GT(grad.abs().sum().item<double>(), 0) << name;
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

TEST(TopologyDiagnosticsTest, SquareLayerKnownAnswers) {
  // One layer of four neurons with two inputs each, no bias: the unit square's corners.
  const auto w = torch::tensor({0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0}, torch::kDouble);
  TopologyDiagnosticsOptions o;
  o.scale = 1.2;  // past the sides (1), before the diagonals (√2)
  o.layer_names = {"fc1"};
  const auto d = TopologyDiagnostics(w, {{4, 2}}, o);
  EXPECT_EQ(d.at("topo/fc1/betti0"), 1);
  EXPECT_EQ(d.at("topo/fc1/betti1"), 1);
  EXPECT_NEAR(d.at("topo/fc1/total_persistence0"), 3.0, 1e-12);
  EXPECT_NEAR(d.at("topo/fc1/total_persistence1"), std::sqrt(2.0) - 1, 1e-12);
  // Mapper with the norm filter (0, 1, √2, 1) on 4 intervals of gain 0.3 over [0, √2]: the origin
  // alone in the first; (1, 0) and (0, 1) in the third, apart at scale 1.2 (two nodes); those two
  // and (1, 1) in the fourth, one node. Two edges join the fourth's node to the third's; the
  // second interval is empty, so the origin's node stays apart.
  EXPECT_EQ(d.at("topo/fc1/mapper_nodes"), 4);
  EXPECT_EQ(d.at("topo/fc1/mapper_edges"), 2);
  EXPECT_EQ(d.at("topo/fc1/mapper_components"), 2);
  // The median distance is 1 (four sides, two diagonals): one component and the loop, born at 1,
  // are alive there (a class counts from its birth, up to but not at its death).
  const auto median = TopologyDiagnostics(w, {{4, 2}});
  EXPECT_EQ(median.at("topo/layer0/betti0"), 1);
  EXPECT_EQ(median.at("topo/layer0/betti1"), 1);
  o.mapper_intervals = 1;
  EXPECT_THROW(TopologyDiagnostics(w, {{4, 2}}, o), BadInput);
}

TEST(TopologyDiagnosticsTest, EachCloudGetsItsOwnMapperGraph) {
  // GUDHI's Cover_complex, given points, caches their distances in ./matrix_dist and reads that file
  // back for the next cloud. Two clouds in turn, the square again, and no file left behind.
  const auto square = torch::tensor({0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0}, torch::kDouble);
  // Two far clusters of three: norms about 0 and 4.3, one interval each at scale 1.
  const auto clusters = torch::tensor({0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 3.0, 3.0, 3.1, 3.0, 3.0, 3.1}, torch::kDouble);
  TopologyDiagnosticsOptions o;
  o.scale = 1.2;
  const auto first = TopologyDiagnostics(square, {{4, 2}}, o);
  o.scale = 1.0;
  const auto two = TopologyDiagnostics(clusters, {{6, 2}}, o);
  EXPECT_EQ(two.at("topo/layer0/betti0"), 2);
  EXPECT_EQ(two.at("topo/layer0/mapper_nodes"), 2);
  EXPECT_EQ(two.at("topo/layer0/mapper_edges"), 0);
  EXPECT_EQ(two.at("topo/layer0/mapper_components"), 2);
  o.scale = 1.2;
  const auto again = TopologyDiagnostics(square, {{4, 2}}, o);
  EXPECT_EQ(again, first);
  EXPECT_EQ(again.at("topo/layer0/mapper_nodes"), 4);
  EXPECT_FALSE(std::filesystem::exists("matrix_dist"));
}

TEST(TopologyDiagnosticsTest, EveryLayerOfTheCnnReports) {
  const LossInputs in = RandomCnns(1, 4);
  const auto d = TopologyDiagnostics(in.predicted[0], in.layer_shapes);
  for (int l = 0; l < 5; ++l) {
    const std::string key = "topo/layer" + std::to_string(l) + "/";
    for (const std::string stat : {"betti0", "betti1", "total_persistence0", "total_persistence1", "mapper_nodes",
                                   "mapper_edges", "mapper_components"}) {
      EXPECT_EQ(d.count(key + stat), 1u) << key + stat;
    }
    EXPECT_GE(d.at(key + "betti0"), 1);
    EXPECT_GT(d.at(key + "total_persistence0"), 0);
    EXPECT_GE(d.at(key + "mapper_components"), 1);
  }
  EXPECT_THROW(TopologyDiagnostics(in.predicted[0], {}), BadInput);
}

}  // namespace
}  // namespace tb
