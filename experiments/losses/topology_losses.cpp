// Topological losses of the merging report (4.5.15, 4.5.17; the primer 5.4) between a predicted
// weight vector p and its target t, both [B, P] flattened networks whose layout LossInputs.
// layer_shapes gives (DescribeModel). Each weight layer's neurons are a point cloud (a neuron:
// its incoming weights and its bias; topology.h); D_k(x) is the H_k persistence diagram of the
// Vietoris–Rips filtration of a cloud x (GUDHI, Z/2, essential classes left out: with the default
// max_edge the only one is the H0 class born at 0, in every cloud). Each loss sums over the
// weight layers l and the homology dimensions k of `dims` and is the mean over B.
//  - bottleneck: the report's 4.5.15, Σ_l Σ_k d_B(D_k(p_l), D_k(t_l)), d_B the exact bottleneck
//    distance (GUDHI's bottleneck_distance). A metric for logging: the result has no gradient.
//  - persistence: Σ_l Σ_k SW(D_k(p_l), D_k(t_l)), SW the sliced Wasserstein distance of Carrière,
//    Cuturi & Oudot 2017 on `directions` angles, L1 (W1) on each line; the diagram points are
//    pairwise distances of p's neurons, so the gradient reaches p (zero where the pairing ties).
//  - multipersistence: the report's 4.5.17 names "multipersistence L2" without a formula; ours is
//    the L2 distance of the fibered barcodes' persistence landscapes of the function-Rips
//    bifiltration (distance r, vertex function f: `function`): a simplex σ is present at (r, s)
//    when diam σ ≤ r and max_{v∈σ} f(v) ≤ s. Along the line t ↦ t (cos α_j, sin α_j),
//    α_j = jπ / (2(lines + 1)), j = 1..lines, σ enters at max(diam σ / cos α_j, max f / sin α_j),
//    a one-parameter filtration; with Λ the first `landscapes` landscapes of its diagrams on
//    `resolution` points of [0, T_j] (T_j the later of the two complexes' completion values, where
//    essential classes die), the loss is Σ_l sqrt((1/lines) Σ_j Σ_k ∫ ||Λ(p_l) − Λ(t_l)||² dt).
//    Differentiable like persistence.
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/losses/loss.h"
#include "experiments/losses/topology.h"
#include "store/errors.h"

namespace tb {
namespace {

struct TopologyOptions {
  std::vector<int64_t> dims = {0, 1};
  double max_edge = 0;
  void Bind(Options& o) {
    o.Add("dims", &dims, "homology dimensions compared, from 0 and 1");
    o.Add("max_edge", &max_edge, "Rips edges longer than this left out; 0: none (an infinite threshold)");
  }
  // Checks the options; the Rips threshold.
  double Check() const {
    if (dims.empty()) throw BadInput("dims=: expected a list from 0 and 1");
    for (int64_t d : dims) {
      if (d != 0 && d != 1) throw BadInput(fmt::format("dims={}: expected a list from 0 and 1", fmt::join(dims, ",")));
    }
    if (!(max_edge >= 0)) throw BadInput(fmt::format("max_edge={}: expected >= 0 (0: no threshold)", max_edge));
    return max_edge == 0 ? kInfinity : max_edge;
  }
};

// The neuron clouds of the predicted and the target networks, layer by layer, [B, out, k] each.
struct CloudPairs {
  std::vector<NeuronCloud> predicted, target;
};
CloudPairs Clouds(const WeightPair& w, const LossInputs& in) {
  return {NeuronPointClouds(w.predicted, in.layer_shapes), NeuronPointClouds(w.target, in.layer_shapes)};
}

// 0, in p's graph: when every diagram is empty (all of a network's neurons equal) the loss still
// has a gradient (zero) for an optimiser to use.
torch::Tensor ZeroOf(const torch::Tensor& predicted) { return 0.0 * predicted.sum(); }

// Checked before anything else, so a missing layout is the error, not a shape mismatch.
void RequireShapes(const LossInputs& in, const std::string& loss) {
  if (in.layer_shapes.empty()) {
    throw BadInput(fmt::format("loss {}: layer shapes missing; set LossInputs.layer_shapes (DescribeModel)", loss));
  }
}

// The pairs of a batch of persistences, to be rebuilt in torch as rows (birth, death) of one
// tensor: group[r] says whose diagram row r is; an essential class dies at ends[essential_at[r]].
struct PairRows {
  CriticalList values;  // birth, death, birth, death, ...
  std::vector<int64_t> group, essential_at;
  // Adds the pairs of dimension `dim` of p, the persistence of cloud `cloud`, to group `g`;
  // essential classes only when `essential` (their index into Rows' ends) is >= 0.
  void Add(const Persistence& p, int64_t cloud, int dim, int64_t g, int64_t essential) {
    for (const auto& q : p.pairs) {
      if (q.dim != dim || (q.Essential() && essential < 0)) continue;
      values.Add(cloud, q.born_at, p.scale);
      values.Add(cloud, q.Essential() ? q.born_at : q.dies_at, p.scale);
      group.push_back(g);
      essential_at.push_back(q.Essential() ? essential : -1);
    }
  }
  // [rows, 2], deaths of essential classes from `ends`.
  torch::Tensor Rows(const torch::Tensor& points, const torch::Tensor& vertex_values, const torch::Tensor& ends = {}) const {
    const auto v = CriticalValues(points, vertex_values, values).view({-1, 2});
    if (!ends.defined() || v.size(0) == 0) return v;
    const auto at = torch::tensor(essential_at, torch::TensorOptions().dtype(torch::kLong)).to(points.device());
    const auto death = torch::where(at >= 0, ends.index_select(0, at.clamp_min(0)), v.select(1, 1));
    return torch::stack({v.select(1, 0), death}, 1);
  }
};

class Bottleneck : public LossWithOptions<TopologyOptions> {
 public:
  bool IsMetric() const override { return true; }
  torch::Tensor Compute(const LossInputs& in) override {
    RequireShapes(in, "bottleneck");
    const WeightPair w = RequireWeights(in, "bottleneck");
    const double max_edge = opts().Check();
    torch::NoGradGuard no_grad;
    const CloudPairs c = Clouds(w, in);
    double total = 0;
    for (size_t l = 0; l < c.predicted.size(); ++l) {
      for (int64_t b = 0; b < w.predicted.size(0); ++b) {
        const Persistence p = RipsPersistence(c.predicted[l].points[b], max_edge);
        const Persistence t = RipsPersistence(c.target[l].points[b], max_edge);
        for (int64_t d : opts().dims) {
          total += BottleneckDistance(FinitePairs(p, static_cast<int>(d)), FinitePairs(t, static_cast<int>(d)));
        }
      }
    }
    return torch::full({}, total / static_cast<double>(w.predicted.size(0)), w.predicted.options());
  }
};

struct PersistenceOptions : TopologyOptions {
  int64_t directions = 16;
  void Bind(Options& o) {
    TopologyOptions::Bind(o);
    o.Add("directions", &directions, "angles of the sliced Wasserstein distance");
  }
};

class PersistenceLoss : public LossWithOptions<PersistenceOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    RequireShapes(in, "persistence");
    const WeightPair w = RequireWeights(in, "persistence");
    const auto& o = opts();
    const double max_edge = o.Check();
    if (o.directions < 1) throw BadInput(fmt::format("directions={}: expected >= 1", o.directions));
    const int64_t batch = w.predicted.size(0), dims = static_cast<int64_t>(o.dims.size());
    const CloudPairs c = Clouds(w, in);
    torch::Tensor total = ZeroOf(w.predicted);
    // One layer of the whole batch at a time: group (b, dim) of b * dims + dim's index.
    for (size_t l = 0; l < c.predicted.size(); ++l) {
      const auto& x = c.predicted[l].points;
      const auto& y = c.target[l].points;
      PairRows px, py;
      for (int64_t b = 0; b < batch; ++b) {
        const Persistence p = RipsPersistence(x[b], max_edge), t = RipsPersistence(y[b], max_edge);
        for (int64_t k = 0; k < dims; ++k) {
          px.Add(p, b, static_cast<int>(o.dims[k]), b * dims + k, -1);
          py.Add(t, b, static_cast<int>(o.dims[k]), b * dims + k, -1);
        }
      }
      total = total + SlicedWasserstein(px.Rows(x, {}), px.group, py.Rows(y, {}), py.group, batch * dims, o.directions).sum();
    }
    return total / static_cast<double>(batch);
  }
};

struct MultipersistenceOptions : TopologyOptions {
  std::string function = "codensity";
  int64_t neighbours = 1;
  int64_t lines = 4;
  int64_t landscapes = 3;
  int64_t resolution = 32;
  void Bind(Options& o) {
    TopologyOptions::Bind(o);
    o.Add("function", &function,
          "the second parameter f: codensity (distance to the k-th nearest neuron) or norm (the neuron's norm)",
          {"codensity", "norm"});
    o.Add("neighbours", &neighbours, "k of codensity");
    o.Add("lines", &lines, "lines of positive slope through the origin along which the bifiltration is read");
    o.Add("landscapes", &landscapes, "persistence landscapes λ_1..λ_K compared per line and dimension");
    o.Add("resolution", &resolution, "grid points of each line's landscapes");
  }
};

class Multipersistence : public LossWithOptions<MultipersistenceOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    RequireShapes(in, "multipersistence");
    const WeightPair w = RequireWeights(in, "multipersistence");
    const auto& o = opts();
    const double max_edge = o.Check();
    if (o.lines < 1) throw BadInput(fmt::format("lines={}: expected >= 1", o.lines));
    if (o.landscapes < 1) throw BadInput(fmt::format("landscapes={}: expected >= 1", o.landscapes));
    if (o.resolution < 2) throw BadInput(fmt::format("resolution={}: expected >= 2", o.resolution));
    if (o.neighbours < 1) throw BadInput(fmt::format("neighbours={}: expected >= 1", o.neighbours));
    const double pi = std::acos(-1.0);
    std::vector<FiltrationScale> scales;
    for (int64_t j = 1; j <= o.lines; ++j) {
      const double alpha = j * pi / (2.0 * (o.lines + 1));
      scales.push_back({1.0 / std::cos(alpha), 1.0 / std::sin(alpha)});
    }
    const int64_t batch = w.predicted.size(0), lines = o.lines, dims = static_cast<int64_t>(o.dims.size());
    const CloudPairs c = Clouds(w, in);
    torch::Tensor total = ZeroOf(w.predicted);
    // One layer of the whole batch at a time: line (b, j) is b * lines + j; group (b, j, dim) is
    // line (b, j) * dims + dim's index.
    for (size_t l = 0; l < c.predicted.size(); ++l) {
      const auto& x = c.predicted[l].points;
      const auto& y = c.target[l].points;
      const auto fx = VertexFunction(x), fy = VertexFunction(y);
      PairRows px, py;
      CriticalList ex, ey;  // where each line's complex is complete
      for (int64_t b = 0; b < batch; ++b) {
        const auto p = ComputePersistence(x[b], fx[b], scales, max_edge), t = ComputePersistence(y[b], fy[b], scales, max_edge);
        for (int64_t j = 0; j < lines; ++j) {
          ex.Add(b, p[j].max_at, p[j].scale);
          ey.Add(b, t[j].max_at, t[j].scale);
          for (int64_t k = 0; k < dims; ++k) {
            px.Add(p[j], b, static_cast<int>(o.dims[k]), (b * lines + j) * dims + k, b * lines + j);
            py.Add(t[j], b, static_cast<int>(o.dims[k]), (b * lines + j) * dims + k, b * lines + j);
          }
        }
      }
      const auto ends = torch::maximum(CriticalValues(x, fx, ex), CriticalValues(y, fy, ey));  // [B * lines]
      const auto group_ends = ends.repeat_interleave(dims);                                    // [B * lines * dims]
      const auto grids = torch::linspace(0, 1, o.resolution, w.predicted.options()).unsqueeze(0) * group_ends.unsqueeze(1);
      const int64_t groups = batch * lines * dims;
      const auto lx = Landscapes(px.Rows(x, fx, ends), px.group, groups, o.landscapes, grids);
      const auto ly = Landscapes(py.Rows(y, fy, ends), py.group, groups, o.landscapes, grids);
      // ∫ by the trapezoid rule: the landscapes are 0 at both ends of every grid.
      const auto integrals = (lx - ly).pow(2).flatten(1).sum(1) * group_ends / static_cast<double>(o.resolution - 1);
      total = total + SafeSqrt(integrals.view({batch, lines * dims}).sum(1) / static_cast<double>(lines)).sum();
    }
    return total / static_cast<double>(batch);
  }

 private:
  // f on the neurons of clouds [B, n, k]: [B, n], differentiable.
  torch::Tensor VertexFunction(const torch::Tensor& x) const {
    if (opts().function == "norm") return SafeSqrt(x.pow(2).sum(-1));
    const int64_t n = x.size(1);
    if (opts().neighbours >= n) {
      throw BadInput(fmt::format("neighbours={}: expected fewer than the {} neurons of every layer", opts().neighbours, n));
    }
    const auto self = torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(x.device()));
    return std::get<0>(PairwiseDistances(x).masked_fill(self, kInfinity).kthvalue(opts().neighbours, -1));
  }
};

}  // namespace

TB_REGISTER_LOSS(bottleneck, Bottleneck, "Bottleneck distance of neuron persistence diagrams",
                 "the merging report, 4.5.15; Cohen-Steiner, Edelsbrunner & Harer 2007");
TB_REGISTER_LOSS(persistence, PersistenceLoss, "Sliced Wasserstein distance of neuron persistence diagrams",
                 "the merging report, 5.4; Carrière, Cuturi & Oudot 2017; Gabrielsson et al. 2020");
TB_REGISTER_LOSS(multipersistence, Multipersistence, "Fibered-barcode landscape L2 of the function-Rips bifiltration",
                 "the merging report, 4.5.17 and 5.4 (our definition); Lesnick & Wright 2015; Vipond 2020");

}  // namespace tb
