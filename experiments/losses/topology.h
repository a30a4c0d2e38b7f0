// Persistent homology of a network's neurons, for the topological losses (topology_losses.cpp)
// and for diagnostics. Each weight layer's neurons are a point cloud (a neuron: its incoming
// weights, flattened, and its bias); GUDHI (Rips_complex, Simplex_tree, Persistent_cohomology
// over Z/2) computes the persistence pairs of a filtration of the cloud's complete complex up to
// triangles (so H0 and H1 come out), and every pair remembers the edge or vertex that gave its
// two simplices their values, so that the diagram can be rebuilt in torch from the points' own
// pairwise distances: differentiable wherever the pairing does not change (the trick of
// RipsLayer / topologylayer, Gabrielsson et al. 2020). GUDHI stays inside topology.cpp.
//
//   auto clouds = tb::NeuronPointClouds(flat_weights, in.layer_shapes);
//   tb::Persistence p = tb::RipsPersistence(clouds[0].points);
//   torch::Tensor h0 = tb::DiagramPoints(clouds[0].points, {}, p, /*dim=*/0);  // [k, 2], has grad
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace tb {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// One weight layer's neurons: `points` [out, k] (or [B, out, k] for a batch of vectors) are
// rows of the flat vector (differentiable), `layer` the index of the weight in layer_shapes.
struct NeuronCloud {
  int64_t layer;
  torch::Tensor points;
};

// Every weight of layer_shapes (a shape of two or more dimensions [out, ...]) gives `out` points,
// each its incoming weights flattened, with the bias appended when the next shape is [out]; other
// one-dimensional shapes are skipped. flat_weights: [P] or [B, P]. BadInput when layer_shapes are
// empty ("set LossInputs.layer_shapes (DescribeModel)") or do not add up to P.
std::vector<NeuronCloud> NeuronPointClouds(const torch::Tensor& flat_weights,
                                           const std::vector<std::vector<int64_t>>& layer_shapes);

// √x with gradient 0 (not ∞ · 0 = NaN) where x = 0.
torch::Tensor SafeSqrt(const torch::Tensor& x);

// Pairwise Euclidean distances [..., n, n] of points [..., n, k], with a zero gradient (not NaN)
// where two points coincide, the diagonal included.
torch::Tensor PairwiseDistances(const torch::Tensor& points);

// A filtration of the complete complex on n points up to triangles, edges longer than max_edge
// left out: a simplex enters at max(edge · its longest edge, vertex · its vertices' largest
// value). {1, 0} is the Vietoris–Rips filtration; {1/cos α, 1/sin α} the function-Rips
// bifiltration (distance, vertex value) read along the line t ↦ t (cos α, sin α).
struct FiltrationScale {
  double edge = 1.0;
  double vertex = 0.0;
};

// What gave a simplex its value: the edge (i, j), or the vertex i when i == j; -1 for none.
struct Critical {
  int64_t i = -1, j = -1;
};

struct PersistencePair {
  int dim = 0;
  double birth = 0, death = kInfinity;  // death = infinity: an essential class
  Critical born_at, dies_at;
  bool Essential() const { return dies_at.i < 0; }
};

struct Persistence {
  std::vector<PersistencePair> pairs;  // H0 and H1, zero-length pairs left out
  FiltrationScale scale;
  double max_value = 0;  // the value at which the whole complex is present
  Critical max_at;
};

// Persistence of `scales`' filtrations of one point cloud (one Rips complex, refiltered per
// scale). vertex_values [n] may be undefined (all zero); both are read without grad.
std::vector<Persistence> ComputePersistence(const torch::Tensor& points, const torch::Tensor& vertex_values,
                                            const std::vector<FiltrationScale>& scales,
                                            double max_edge = kInfinity);
Persistence RipsPersistence(const torch::Tensor& points, double max_edge = kInfinity);

// Simplex values to recompute in torch, for many clouds at once: entry e is the value that scale
// `scales[e]` gives critical `at[e]` of cloud `cloud[e]` (an index into a batch of clouds).
struct CriticalList {
  std::vector<int64_t> cloud;
  std::vector<Critical> at;
  std::vector<FiltrationScale> scales;
  void Add(int64_t c, const Critical& a, const FiltrationScale& s) {
    cloud.push_back(c);
    at.push_back(a);
    scales.push_back(s);
  }
  size_t size() const { return at.size(); }
};
// The values [list.size()] from points [C, n, k] and vertex_values [C, n] (undefined: zeros),
// differentiable in both.
torch::Tensor CriticalValues(const torch::Tensor& points, const torch::Tensor& vertex_values, const CriticalList& list);

// The dimension-`dim` pairs of `p` as a [k, 2] tensor of (birth, death), each value recomputed
// from `points` and `vertex_values` (the tensors `p` came from; gradients flow to both).
// Essential classes are left out when `essential_death` is undefined, else die there.
torch::Tensor DiagramPoints(const torch::Tensor& points, const torch::Tensor& vertex_values, const Persistence& p,
                            int dim, const torch::Tensor& essential_death = {});
// p.max_value, differentiably.
torch::Tensor MaxValue(const torch::Tensor& points, const torch::Tensor& vertex_values, const Persistence& p);

// (birth, death) pairs of one dimension, as doubles.
std::vector<std::pair<double, double>> FinitePairs(const Persistence& p, int dim);

// The exact bottleneck distance of two finite diagrams (GUDHI's bottleneck_distance, e = 0):
// the L∞ cost of the best matching, a point matched to the diagonal costing (death − birth)/2.
double BottleneckDistance(const std::vector<std::pair<double, double>>& a,
                          const std::vector<std::pair<double, double>>& b);

// The sliced Wasserstein distance of diagrams a [k, 2] and b [m, 2] (Carrière, Cuturi & Oudot
// 2017): each augmented with the diagonal projections of the other's points, projected on
// `directions` angles θ evenly spaced in (−π/2, π/2), sorted; the mean over θ of the L1 distance
// of the sorted projections (W1 on the line). Differentiable in both.
torch::Tensor SlicedWasserstein(const torch::Tensor& a, const torch::Tensor& b, int64_t directions);
// The same for `groups` pairs of diagrams at once: the rows of a [N, 2] and b [M, 2] belong to
// the groups a_group and b_group name; [groups] distances. (Both sides of a group are padded
// with the same diagonal points, which leaves every W1 unchanged.)
torch::Tensor SlicedWasserstein(const torch::Tensor& a, const std::vector<int64_t>& a_group, const torch::Tensor& b,
                                const std::vector<int64_t>& b_group, int64_t groups, int64_t directions);

// The first `levels` persistence landscapes λ_k(t) = k-th largest max(0, min(t − b, d − t)) of a
// diagram [k, 2] on `grid` [G]: [levels, G], zero where the diagram has fewer points.
torch::Tensor Landscapes(const torch::Tensor& diagram, int64_t levels, const torch::Tensor& grid);
// The same for `groups` diagrams at once, the rows of `diagrams` [N, 2] in the groups `group`
// names, each on its row of `grids` [groups, G]: [groups, levels, G].
torch::Tensor Landscapes(const torch::Tensor& diagrams, const std::vector<int64_t>& group, int64_t groups,
                         int64_t levels, const torch::Tensor& grids);

struct TopologyDiagnosticsOptions {
  double scale = 0;                      // the Betti numbers' and Mapper's scale; 0: median distance
  int64_t mapper_intervals = 4;          // intervals covering the filter's range (at least 2)
  double mapper_gain = 0.3;              // their overlap, in (0, 0.5)
  std::vector<std::string> layer_names;  // one per weight layer; empty: layer0, layer1, ...
};

// Per weight layer L: topo/L/betti0 and topo/L/betti1 (classes alive at the scale), topo/L/
// total_persistence0 and ..1 (Σ death − birth of the finite pairs), and the Mapper graph (GUDHI's
// Cover_complex, "Nerve"; filter: each neuron's norm; clusters: connected components of the
// neighbourhood graph at the scale): topo/L/mapper_nodes, mapper_edges, mapper_components.
std::map<std::string, double> TopologyDiagnostics(const torch::Tensor& flat_weights,
                                                  const std::vector<std::vector<int64_t>>& layer_shapes,
                                                  const TopologyDiagnosticsOptions& options = {});

}  // namespace tb
