#include "experiments/merge/merger_diagnostics.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "experiments/losses/topology.h"
#include "store/errors.h"

namespace tb {
namespace {

std::vector<double> Values(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// conv1.weight → conv1; a name without the suffix stays as it is.
std::string LayerName(const std::string& parameter) {
  const std::string suffix = ".weight";
  if (parameter.size() > suffix.size() && parameter.compare(parameter.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return parameter.substr(0, parameter.size() - suffix.size());
  }
  return parameter;
}

// exp(H(s / Σs)): 1 for a rank-one matrix, the rank for equal singular values (Roy & Vetterli 2007).
double EffectiveRank(const torch::Tensor& s) {
  const double total = s.sum().item<double>();
  if (!(total > 0)) return 0.0;
  const auto p = s / total;
  const auto positive = p.masked_select(p > 0);
  return std::exp(-(positive * positive.log()).sum().item<double>());
}

std::vector<std::string> WeightLayerNames(const LossInputs& described) {
  std::vector<std::string> names;
  for (size_t l = 0; l < described.layer_shapes.size() && l < described.layer_names.size(); ++l) {
    if (described.layer_shapes[l].size() >= 2) names.push_back(LayerName(described.layer_names[l]));
  }
  return names;
}

}  // namespace

std::map<std::string, double> NetworkTopology(const torch::Tensor& flat, const LossInputs& described) {
  TopologyDiagnosticsOptions topo;
  topo.layer_names = WeightLayerNames(described);
  return TopologyDiagnostics(flat, described.layer_shapes, topo);
}

std::map<std::string, double> LogPredictionDiagnostics(RunLogger* log, const torch::Tensor& predicted,
                                                       const torch::Tensor& target, const LossInputs& described,
                                                       int64_t step, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  const auto& bounds = described.layer_bounds;
  const auto& shapes = described.layer_shapes;
  if (bounds.size() < 2 || shapes.size() + 1 != bounds.size() || described.layer_names.size() != shapes.size()) {
    throw BadInput("prediction diagnostics: the network is not described; expected DescribeModel's layer_bounds, "
                   "layer_shapes and layer_names");
  }
  const auto p = predicted.detach().to(torch::kCPU, torch::kDouble).reshape({-1});
  const auto t = target.detach().to(torch::kCPU, torch::kDouble).reshape({-1});
  if (p.numel() != bounds.back() || t.numel() != bounds.back()) {
    throw BadInput(fmt::format("prediction diagnostics: vectors of {} and {} values for a network of {}: expected {} each",
                               p.numel(), t.numel(), bounds.back(), bounds.back()));
  }
  std::map<std::string, double> scalars;
  auto histogram = [&](const std::string& key, const torch::Tensor& v) {
    if (log) log->Histogram(prefix + key, Values(v), step);
  };
  histogram("weights/predicted", p);
  histogram("weights/target", t);
  histogram("weights/residual", p - t);

  // Per weight layer (a shape of two or more dimensions): histograms and the singular values.
  const std::vector<std::string> names = WeightLayerNames(described);
  for (size_t l = 0, w = 0; l < shapes.size(); ++l) {
    if (shapes[l].size() < 2) continue;
    const std::string& name = names[w++];
    const auto wp = p.slice(0, bounds[l], bounds[l + 1]).reshape({shapes[l][0], -1});
    const auto wt = t.slice(0, bounds[l], bounds[l + 1]).reshape({shapes[l][0], -1});
    histogram("weights/" + name + "/predicted", wp);
    histogram("weights/" + name + "/target", wt);
    for (const auto& [side, w] : {std::pair{"predicted", wp}, std::pair{"target", wt}}) {
      const auto s = torch::linalg_svdvals(w);
      histogram("spectrum/" + name + "/" + side, s);
      scalars[fmt::format("spectrum/{}/top_{}", name, side)] = s.max().item<double>();
      scalars[fmt::format("spectrum/{}/effective_rank_{}", name, side)] = EffectiveRank(s);
    }
  }

  // Persistent homology of each weight layer's neurons (incoming weights and bias).
  for (const auto& [side, w] : {std::pair{"predicted", p}, std::pair{"target", t}}) {
    for (const auto& [key, value] : NetworkTopology(w, described)) scalars[std::string(side) + "/" + key] = value;
  }
  const auto pc = NeuronPointClouds(p, shapes), tc = NeuronPointClouds(t, shapes);
  std::vector<double> lifetimes[2][2];  // [dim][side]
  for (size_t l = 0; l < pc.size(); ++l) {
    const Persistence pp = RipsPersistence(pc[l].points), tp = RipsPersistence(tc[l].points);
    for (int dim = 0; dim <= 1; ++dim) {
      const auto a = FinitePairs(pp, dim), b = FinitePairs(tp, dim);
      scalars[fmt::format("topo/{}/bottleneck{}", names[l], dim)] = BottleneckDistance(a, b);
      for (const auto& [birth, death] : a) lifetimes[dim][0].push_back(death - birth);
      for (const auto& [birth, death] : b) lifetimes[dim][1].push_back(death - birth);
    }
  }
  if (log) {
    for (int dim = 0; dim <= 1; ++dim) {
      log->Histogram(fmt::format("{}persistence/h{}/predicted", prefix, dim), lifetimes[dim][0], step);
      log->Histogram(fmt::format("{}persistence/h{}/target", prefix, dim), lifetimes[dim][1], step);
    }
    for (const auto& [key, value] : scalars) log->Scalar(prefix + key, value, step);
  }
  return scalars;
}

}  // namespace tb
