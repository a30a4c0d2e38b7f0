#include "experiments/merge/merging.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <dlib/optimization/max_cost_assignment.h>
#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "store/errors.h"

namespace tb {
namespace {

std::map<std::string, torch::Tensor> ByName(const Weights& w) {
  std::map<std::string, torch::Tensor> m;
  for (const auto& [k, v] : w) m[k] = v;
  return m;
}

// The weight layers of a chain model: its hidden layers, then the head.
std::vector<std::string> WeightLayers(const Classifier& model) {
  std::vector<std::string> layers = model.HiddenLayerNames();
  layers.push_back("head");
  return layers;
}

// The layer's weight as [out, rest] with the bias as the last column.
torch::Tensor WithBias(const torch::Tensor& weight, const torch::Tensor& bias) {
  return torch::cat({weight.reshape({weight.size(0), -1}), bias.unsqueeze(1)}, 1);
}

// W with its input units permuted: channels of a conv weight; for a linear weight after a
// layer of `units` units, blocks of in/units columns (a conv output flattened channel-major).
torch::Tensor PermuteInput(const torch::Tensor& w, const torch::Tensor& perm, int64_t units) {
  if (w.dim() == 4) return w.index_select(1, perm);
  const int64_t out = w.size(0), in = w.size(1);
  return w.reshape({out, units, in / units}).index_select(1, perm).reshape({out, in});
}

// W's input side as [units, everything else], for matching by the units it reads.
torch::Tensor ByInputUnit(const torch::Tensor& w, int64_t units) {
  if (w.dim() == 4) return w.transpose(0, 1).reshape({units, -1});
  const int64_t out = w.size(0), in = w.size(1);
  return w.reshape({out, units, in / units}).permute({1, 0, 2}).reshape({units, -1});
}

// The linear assignment maximising the total similarity, with dlib (integer costs: the
// similarities scaled to 0 … 10⁹).
std::vector<int64_t> MaxAssignment(const torch::Tensor& similarity) {
  const auto s = similarity.to(torch::kDouble).contiguous();
  const int64_t n = s.size(0);
  const double lo = s.min().item<double>(), hi = s.max().item<double>();
  const double scale = hi > lo ? 1e9 / (hi - lo) : 0.0;
  dlib::matrix<long> cost(n, n);
  auto a = s.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) cost(i, j) = std::lround((a[i][j] - lo) * scale);
  }
  const std::vector<long> assignment = dlib::max_cost_assignment(cost);
  return std::vector<int64_t>(assignment.begin(), assignment.end());
}

}  // namespace

Weights GetWeights(Classifier& model) {
  Weights w;
  for (const auto& item : model.named_parameters()) w.emplace_back(item.key(), item.value().detach().clone());
  return w;
}

void SetWeights(Classifier& model, const Weights& weights) {
  auto by_name = ByName(weights);
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    auto it = by_name.find(item.key());
    if (it == by_name.end()) throw std::logic_error("SetWeights: no weights for " + item.key());
    item.value().copy_(it->second);
  }
}

ModelPtr FromWeights(const ModelSpec& spec, const Weights& weights, torch::Device device) {
  ModelPtr m = MakeModel(spec);
  m->to(device);
  SetWeights(*m, weights);
  m->eval();
  return m;
}

Weights TaskVectorMerge(const Weights& base, const std::vector<Weights>& parents, const TaskVectorOptions& o) {
  if (parents.empty()) throw std::logic_error("TaskVectorMerge: no parents");
  const double k = static_cast<double>(parents.size());
  Weights out;
  if (o.combine == "mean" && base.empty()) {
    for (size_t i = 0; i < parents[0].size(); ++i) {
      torch::Tensor sum = parents[0][i].second.clone();
      for (size_t p = 1; p < parents.size(); ++p) sum.add_(parents[p][i].second);
      out.emplace_back(parents[0][i].first, sum.div_(k));
    }
    return out;
  }
  if (base.empty()) throw std::logic_error("TaskVectorMerge: combine " + o.combine + " needs a base");
  // Task vectors, trimmed for TIES to the `density` share of largest magnitudes over the whole
  // vector (every tensor together, as TIES-Merging trims).
  std::vector<std::vector<torch::Tensor>> tau(parents.size());
  for (size_t p = 0; p < parents.size(); ++p) {
    for (size_t i = 0; i < base.size(); ++i) tau[p].push_back(parents[p][i].second - base[i].second);
    if (o.combine == "ties" && o.density < 1) {
      std::vector<torch::Tensor> flat;
      for (const auto& t : tau[p]) flat.push_back(t.abs().reshape({-1}));
      const torch::Tensor all = torch::cat(flat);
      const int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.density * all.numel())));
      const double threshold = std::get<0>(torch::topk(all, keep)).min().item<double>();
      for (auto& t : tau[p]) t = t * (t.abs() >= threshold).to(t.scalar_type());
    }
  }
  for (size_t i = 0; i < base.size(); ++i) {
    torch::Tensor merged;
    if (o.combine == "mean" || o.combine == "sum") {
      merged = tau[0][i].clone();
      for (size_t p = 1; p < parents.size(); ++p) merged.add_(tau[p][i]);
      if (o.combine == "mean") merged.div_(k);
    } else if (o.combine == "ties") {
      torch::Tensor total = tau[0][i].clone();
      for (size_t p = 1; p < parents.size(); ++p) total.add_(tau[p][i]);
      const torch::Tensor sign = total.sign();  // the elected sign: that of the larger total mass
      torch::Tensor sum = torch::zeros_like(total), count = torch::zeros_like(total);
      for (size_t p = 0; p < parents.size(); ++p) {
        const torch::Tensor agrees = (tau[p][i].sign() == sign).logical_and(tau[p][i] != 0).to(total.scalar_type());
        sum.add_(tau[p][i] * agrees);
        count.add_(agrees);
      }
      merged = sum / count.clamp_min(1);  // disjoint mean: over the parents that agree
    } else {
      throw BadInput(fmt::format("combine={}: unknown (expected mean, sum or ties)", o.combine));
    }
    out.emplace_back(base[i].first, base[i].second + o.lambda * merged);
  }
  return out;
}

Weights FisherMerge(const std::vector<Weights>& parents, const std::vector<Weights>& fishers, double floor) {
  Weights out;
  for (size_t i = 0; i < parents[0].size(); ++i) {
    torch::Tensor num = torch::zeros_like(parents[0][i].second), den = torch::zeros_like(num), mean = torch::zeros_like(num);
    for (size_t p = 0; p < parents.size(); ++p) {
      num.add_(fishers[p][i].second * parents[p][i].second);
      den.add_(fishers[p][i].second);
      mean.add_(parents[p][i].second / static_cast<double>(parents.size()));
    }
    const torch::Tensor informed = den > floor * static_cast<double>(parents.size());
    out.emplace_back(parents[0][i].first, torch::where(informed, num / den.clamp_min(floor), mean));
  }
  return out;
}

Weights DiagonalFisher(Classifier& model, const torch::Tensor& images, const torch::Tensor& labels) {
  model.eval();
  Weights fisher;
  for (const auto& item : model.named_parameters()) fisher.emplace_back(item.key(), torch::zeros_like(item.value()));
  const int64_t n = images.size(0);
  for (int64_t s = 0; s < n; ++s) {
    model.zero_grad();
    auto logp = torch::log_softmax(model.forward(images.slice(0, s, s + 1)), 1);
    (-logp.index({0, labels[s].item<int64_t>()})).backward();
    size_t i = 0;
    for (const auto& item : model.named_parameters()) {
      if (item.value().grad().defined()) fisher[i].second.add_(item.value().grad().detach().square());
      ++i;
    }
  }
  model.zero_grad();
  for (auto& [k, v] : fisher) v.div_(static_cast<double>(std::max<int64_t>(n, 1)));
  return fisher;
}

std::vector<LayerInput> LayerInputs(Classifier& model, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  model.eval();
  const auto params = model.named_parameters();
  const auto layers = WeightLayers(model);
  const auto acts = model.HiddenActivations(images);
  std::vector<LayerInput> out;
  for (size_t l = 0; l < layers.size(); ++l) {
    const bool conv = params.find(layers[l] + ".weight")->dim() == 4;
    torch::Tensor in = l == 0 ? images : acts[l - 1];
    in = conv ? (in.dim() == 4 ? in : in.reshape({in.size(0), 1, 28, 28})) : in.reshape({in.size(0), -1});
    out.push_back({layers[l], in});
  }
  return out;
}

torch::Tensor InputGram(const torch::Tensor& weight, const torch::Tensor& input) {
  torch::Tensor x;
  if (weight.dim() == 4) {
    namespace F = torch::nn::functional;
    auto patches = F::unfold(input, F::UnfoldFuncOptions({weight.size(2), weight.size(3)}));  // [N, C·k·k, L]
    x = patches.transpose(1, 2).reshape({-1, patches.size(1)});
  } else {
    x = input.reshape({input.size(0), -1});
  }
  x = torch::cat({x, torch::ones({x.size(0), 1}, x.options())}, 1);
  return x.t().mm(x).to(torch::kDouble);  // float products (the patches are large), solved in double
}

Weights RegMeanMerge(const std::vector<Weights>& parents,
                     const std::vector<std::vector<std::pair<std::string, torch::Tensor>>>& grams, double alpha) {
  std::vector<std::map<std::string, torch::Tensor>> w, g;
  for (const auto& p : parents) w.push_back(ByName(p));
  for (const auto& p : grams) {
    std::map<std::string, torch::Tensor> m;
    for (const auto& [k, v] : p) m[k] = v;
    g.push_back(std::move(m));
  }
  std::map<std::string, torch::Tensor> merged;
  for (const auto& [layer, gram0] : grams[0]) {
    const torch::Tensor weight0 = w[0].at(layer + ".weight");
    torch::Tensor lhs = torch::zeros_like(gram0), rhs, mean_wb;
    for (size_t p = 0; p < parents.size(); ++p) {
      const torch::Tensor& gram = g[p].at(layer);
      const torch::Tensor reduced = alpha * gram + (1 - alpha) * torch::diag(torch::diag(gram));
      const torch::Tensor wb = WithBias(w[p].at(layer + ".weight"), w[p].at(layer + ".bias")).to(torch::kDouble);
      lhs.add_(reduced);
      rhs = rhs.defined() ? rhs + reduced.mm(wb.t()) : reduced.mm(wb.t());
      mean_wb = mean_wb.defined() ? mean_wb + wb / static_cast<double>(parents.size()) : wb / static_cast<double>(parents.size());
    }
    // A ridge of 10⁻¹⁰ of the mean diagonal keeps never-active inputs (dead units) solvable, and
    // pulls their weights toward the parents' mean rather than toward 0.
    const double ridge = 1e-10 * torch::diag(lhs).mean().item<double>() + 1e-30;
    lhs.add_(torch::eye(lhs.size(0), lhs.options()) * ridge);
    rhs.add_(ridge * mean_wb.t());
    const torch::Tensor solved = torch::linalg_solve(lhs, rhs).t().to(weight0.scalar_type());  // [out, in + 1]
    merged[layer + ".weight"] = solved.slice(1, 0, solved.size(1) - 1).reshape(weight0.sizes()).contiguous();
    merged[layer + ".bias"] = solved.select(1, solved.size(1) - 1).contiguous();
  }
  Weights out;
  for (const auto& [k, v] : parents[0]) {
    auto it = merged.find(k);
    if (it != merged.end()) {
      out.emplace_back(k, it->second);
    } else {
      torch::Tensor mean = torch::zeros_like(v);
      for (const auto& p : w) mean.add_(p.at(k) / static_cast<double>(parents.size()));
      out.emplace_back(k, mean);
    }
  }
  return out;
}

Permutations WeightMatching(Classifier& model1, Classifier& model2, uint64_t seed, int max_rounds) {
  torch::NoGradGuard no_grad;
  const auto w1 = ByName(GetWeights(model1));
  const auto w2 = ByName(GetWeights(model2));
  const auto layers = WeightLayers(model1);
  const size_t hidden = layers.size() - 1;
  std::vector<int64_t> units(hidden);
  Permutations perms(hidden);
  for (size_t l = 0; l < hidden; ++l) {
    units[l] = w1.at(layers[l] + ".weight").size(0);
    perms[l].resize(units[l]);
    std::iota(perms[l].begin(), perms[l].end(), 0);
  }
  auto perm_tensor = [&](size_t l) { return torch::tensor(perms[l], torch::kInt64); };
  // Model 2's weight and bias of layer `l` with every permutation applied but layer `except`'s.
  auto permuted = [&](size_t l, size_t except) {
    torch::Tensor w = w2.at(layers[l] + ".weight"), b = w2.at(layers[l] + ".bias");
    if (l < hidden && l != except) {
      w = w.index_select(0, perm_tensor(l));
      b = b.index_select(0, perm_tensor(l));
    }
    if (l > 0 && l - 1 != except) w = PermuteInput(w, perm_tensor(l - 1), units[l - 1]);
    return std::pair{w, b};
  };
  for (int round = 0; round < max_rounds; ++round) {
    // The layers' order: a portable permutation (the same on every standard library).
    std::vector<size_t> order;
    for (int64_t l : PortablePermutation(static_cast<int64_t>(hidden), seed * 1000003ULL + static_cast<uint64_t>(round))) {
      order.push_back(static_cast<size_t>(l));
    }
    bool changed = false;
    for (size_t l : order) {
      const int64_t n = units[l];
      auto [w2l, b2l] = permuted(l, l);
      const torch::Tensor a = w1.at(layers[l] + ".weight").reshape({n, -1});
      torch::Tensor sim = a.mm(w2l.reshape({n, -1}).t()) + w1.at(layers[l] + ".bias").unsqueeze(1) * b2l.unsqueeze(0);
      auto [w2n, b2n] = permuted(l + 1, l);
      sim += ByInputUnit(w1.at(layers[l + 1] + ".weight"), n).mm(ByInputUnit(w2n, n).t());
      std::vector<int64_t> best = MaxAssignment(sim);
      if (best != perms[l]) {
        changed = true;
        perms[l] = std::move(best);
      }
    }
    if (!changed) break;
  }
  return perms;
}

ModelPtr Permuted(Classifier& model, const Permutations& perms) {
  const auto layers = WeightLayers(model);
  auto w = ByName(GetWeights(model));
  for (size_t l = 0; l < perms.size(); ++l) {
    const torch::Tensor p = torch::tensor(perms[l], torch::kInt64);
    const std::string name = layers[l];
    w[name + ".weight"] = w[name + ".weight"].index_select(0, p);
    w[name + ".bias"] = w[name + ".bias"].index_select(0, p);
    w[layers[l + 1] + ".weight"] = PermuteInput(w[layers[l + 1] + ".weight"], p, static_cast<int64_t>(perms[l].size()));
  }
  Weights out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), w.at(item.key()));
  return FromWeights(model.spec(), out, model.parameters().front().device());
}

Weights Interpolate(const Weights& w1, const Weights& w2, double t) {
  Weights out;
  for (size_t i = 0; i < w1.size(); ++i) out.emplace_back(w1[i].first, (1 - t) * w1[i].second + t * w2[i].second);
  return out;
}

std::pair<int64_t, int64_t> MarchenkoPasturOutside(const torch::Tensor& matrix) {
  torch::Tensor x = matrix.to(torch::kDouble).reshape({matrix.size(0), -1});
  if (x.size(0) < x.size(1)) x = x.t();
  x = x - x.mean();
  const double n = static_cast<double>(x.size(0)), p = static_cast<double>(x.size(1));
  const double var = x.square().mean().item<double>();
  const torch::Tensor eig = torch::linalg_eigvalsh(x.t().mm(x) / n, "L");
  const double ratio = std::sqrt(p / n);
  const double lo = var * (1 - ratio) * (1 - ratio), hi = var * (1 + ratio) * (1 + ratio);
  const double tol = 1e-9 * hi;
  const int64_t outside = (eig < lo - tol).logical_or(eig > hi + tol).sum().item<int64_t>();
  return {outside, eig.numel()};
}

std::map<std::string, double> WeightDiagnostics(Classifier& model) {
  torch::NoGradGuard no_grad;
  std::map<std::string, double> out;
  int64_t outside_total = 0, eig_total = 0;
  const auto params = model.named_parameters();
  for (const auto& layer : WeightLayers(model)) {
    const torch::Tensor w = params.find(layer + ".weight")->to(torch::kDouble);
    const double mean = w.mean().item<double>();
    const torch::Tensor c = w - mean;
    const double m2 = c.square().mean().item<double>(), m4 = c.pow(4).mean().item<double>();
    out["weights/" + layer + "/mean"] = mean;
    out["weights/" + layer + "/std"] = std::sqrt(m2);
    out["weights/" + layer + "/kurtosis"] = m2 > 0 ? m4 / (m2 * m2) - 3 : std::nan("");
    const auto [outside, count] = MarchenkoPasturOutside(w);
    out["mp/" + layer + "/outside"] = static_cast<double>(outside);
    out["mp/" + layer + "/share_outside"] = static_cast<double>(outside) / static_cast<double>(count);
    outside_total += outside;
    eig_total += count;
  }
  out["mp/share_outside"] = static_cast<double>(outside_total) / static_cast<double>(std::max<int64_t>(eig_total, 1));
  return out;
}

}  // namespace tb
