// Persistence of neuron point clouds with GUDHI (header-only; Debian's libgudhi-dev), kept in this
// one file so that no other translation unit pays for GUDHI's, CGAL's and Boost.Graph's headers.
#include "experiments/losses/topology.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <gudhi/Bottleneck.h>
#include <gudhi/GIC.h>
#include <gudhi/Persistent_cohomology.h>
#include <gudhi/Rips_complex.h>
#include <gudhi/Simplex_tree.h>
#include <gudhi/distance_functions.h>

#include "store/errors.h"

namespace tb {
namespace {

// Double filtration values: the float ones of Simplex_tree_options_fast_persistence would round
// the diagrams.
using SimplexTree = Gudhi::Simplex_tree<Gudhi::Simplex_tree_options_full_featured>;
using Cohomology = Gudhi::persistent_cohomology::Persistent_cohomology<SimplexTree, Gudhi::persistent_cohomology::Field_Zp>;

// The value a filtration gives a simplex with these vertices, and the edge or vertex it comes from.
struct Evaluated {
  double value;
  Critical at;
};

class CloudFiltration {
 public:
  CloudFiltration(const torch::Tensor& points, const torch::Tensor& vertex_values) {
    torch::NoGradGuard no_grad;
    const auto x = points.detach().to(torch::kCPU, torch::kDouble).contiguous();
    n_ = x.size(0);
    const auto d = PairwiseDistances(x);
    const auto acc = d.accessor<double, 2>();
    distances_.assign(n_, std::vector<double>(n_));
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = 0; j < n_; ++j) distances_[i][j] = acc[i][j];
    values_.assign(n_, 0.0);
    if (vertex_values.defined()) {
      const auto v = vertex_values.detach().to(torch::kCPU, torch::kDouble).contiguous();
      const auto vacc = v.accessor<double, 1>();
      for (int64_t i = 0; i < n_; ++i) values_[i] = vacc[i];
    }
  }

  const std::vector<std::vector<double>>& distances() const { return distances_; }

  template <class VertexRange>
  Evaluated Evaluate(const VertexRange& range, const FiltrationScale& s) const {
    std::vector<int64_t> v(range.begin(), range.end());
    Evaluated e{-kInfinity, {}};
    for (size_t a = 0; a < v.size(); ++a) {
      const double fv = s.vertex * values_[v[a]];
      if (fv > e.value) e = {fv, {v[a], v[a]}};
      for (size_t b = a + 1; b < v.size(); ++b) {
        const double fe = s.edge * distances_[v[a]][v[b]];
        if (fe > e.value) e = {fe, {std::min(v[a], v[b]), std::max(v[a], v[b])}};
      }
    }
    return e;
  }

 private:
  int64_t n_ = 0;
  std::vector<std::vector<double>> distances_;
  std::vector<double> values_;
};

torch::Tensor LongTensor(const std::vector<int64_t>& v, const torch::Device& device) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong)).to(device);
}

// Rows of `pool` gathered into blocks [groups, S, ...]: block g holds the rows members[g], then
// copies of row `pad`; S the largest group's size.
torch::Tensor Blocks(const torch::Tensor& pool, const std::vector<std::vector<int64_t>>& members, int64_t pad) {
  size_t size = 0;
  for (const auto& m : members) size = std::max(size, m.size());
  std::vector<int64_t> index(members.size() * size, pad);
  for (size_t g = 0; g < members.size(); ++g) std::copy(members[g].begin(), members[g].end(), index.begin() + g * size);
  auto shape = pool.sizes().vec();
  shape[0] = static_cast<int64_t>(size);
  shape.insert(shape.begin(), static_cast<int64_t>(members.size()));
  return pool.index_select(0, LongTensor(index, pool.device())).view(shape);
}

}  // namespace

std::vector<NeuronCloud> NeuronPointClouds(const torch::Tensor& flat_weights,
                                           const std::vector<std::vector<int64_t>>& layer_shapes) {
  if (layer_shapes.empty()) {
    throw BadInput("layer shapes missing: the topological losses need the network's layers; set LossInputs.layer_shapes (DescribeModel)");
  }
  if (flat_weights.dim() != 1 && flat_weights.dim() != 2) {
    throw BadInput(fmt::format("weights {}: expected flat vectors [P] or [B, P]", fmt::join(flat_weights.sizes(), "x")));
  }
  const bool single = flat_weights.dim() == 1;
  const torch::Tensor x = single ? flat_weights.unsqueeze(0) : flat_weights;
  const int64_t batch = x.size(0);
  std::vector<int64_t> offsets = {0};
  for (const auto& shape : layer_shapes) {
    offsets.push_back(offsets.back() + std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>()));
  }
  if (offsets.back() != x.size(1)) {
    throw BadInput(fmt::format("layer shapes of {} weights for a vector of {}: expected the shapes of its network (DescribeModel)",
                               offsets.back(), x.size(1)));
  }
  std::vector<NeuronCloud> clouds;
  for (size_t l = 0; l < layer_shapes.size(); ++l) {
    if (layer_shapes[l].size() < 2) continue;
    const int64_t out = layer_shapes[l][0];
    torch::Tensor points = x.slice(1, offsets[l], offsets[l + 1]).reshape({batch, out, -1});
    if (l + 1 < layer_shapes.size() && layer_shapes[l + 1] == std::vector<int64_t>{out}) {
      points = torch::cat({points, x.slice(1, offsets[l + 1], offsets[l + 2]).reshape({batch, out, 1})}, 2);
    }
    clouds.push_back({static_cast<int64_t>(l), single ? points[0] : points});
  }
  return clouds;
}

torch::Tensor SafeSqrt(const torch::Tensor& x) {
  const auto positive = x > 0;
  return torch::where(positive, torch::sqrt(torch::where(positive, x, torch::ones_like(x))), torch::zeros_like(x));
}

torch::Tensor PairwiseDistances(const torch::Tensor& points) {
  return SafeSqrt((points.unsqueeze(-2) - points.unsqueeze(-3)).pow(2).sum(-1));
}

torch::Tensor CriticalValues(const torch::Tensor& points, const torch::Tensor& vertex_values, const CriticalList& list) {
  if (list.size() == 0) return torch::zeros({0}, points.options());
  const int64_t n = points.size(1);
  std::vector<int64_t> is, js;
  std::vector<double> edge_scale, vertex_scale;
  for (size_t e = 0; e < list.size(); ++e) {
    is.push_back(list.cloud[e] * n + list.at[e].i);
    js.push_back(list.cloud[e] * n + list.at[e].j);
    edge_scale.push_back(list.scales[e].edge);
    vertex_scale.push_back(list.scales[e].vertex);
  }
  const auto i = LongTensor(is, points.device()), j = LongTensor(js, points.device());
  const auto scale = [&](const std::vector<double>& v) { return torch::tensor(v, torch::kDouble).to(points.options()); };
  const auto flat = points.reshape({-1, points.size(2)});
  const auto edge = scale(edge_scale) * SafeSqrt((flat.index_select(0, i) - flat.index_select(0, j)).pow(2).sum(1));
  const auto vertex = vertex_values.defined() ? scale(vertex_scale) * vertex_values.reshape({-1}).index_select(0, i)
                                              : torch::zeros_like(edge);
  return torch::where(i == j, vertex, edge);
}

std::vector<Persistence> ComputePersistence(const torch::Tensor& points, const torch::Tensor& vertex_values,
                                            const std::vector<FiltrationScale>& scales, double max_edge) {
  if (points.dim() != 2) throw BadInput(fmt::format("points {}: expected [n, k]", fmt::join(points.sizes(), "x")));
  if (!(max_edge > 0)) throw BadInput(fmt::format("max_edge={}: expected > 0", max_edge));
  const CloudFiltration cloud(points, vertex_values);
  Gudhi::rips_complex::Rips_complex<double> rips(cloud.distances(), max_edge);
  SimplexTree st;
  rips.create_complex(st, /*dim_max=*/2);

  std::vector<Persistence> out;
  for (const auto& scale : scales) {
    Persistence p;
    p.scale = scale;
    p.max_value = -kInfinity;
    for (auto sh : st.complex_simplex_range()) {
      const Evaluated e = cloud.Evaluate(st.simplex_vertex_range(sh), scale);
      st.assign_filtration(sh, e.value);
      if (e.value > p.max_value) {
        p.max_value = e.value;
        p.max_at = e.at;
      }
    }
    st.clear_filtration();  // the order changed with the values
    // persistence_dim_max: H1 also when the complex has no triangles (a short max_edge).
    Cohomology pcoh(st, /*persistence_dim_max=*/true);
    pcoh.init_coefficients(2);
    pcoh.compute_persistent_cohomology(/*min_interval_length=*/0.0);
    for (const auto& pair : pcoh.get_persistent_pairs()) {
      const auto born = std::get<0>(pair), dies = std::get<1>(pair);
      PersistencePair q;
      q.dim = st.dimension(born);
      if (q.dim > 1) continue;
      q.birth = st.filtration(born);
      q.born_at = cloud.Evaluate(st.simplex_vertex_range(born), scale).at;
      if (dies != st.null_simplex()) {
        q.death = st.filtration(dies);
        q.dies_at = cloud.Evaluate(st.simplex_vertex_range(dies), scale).at;
      }
      p.pairs.push_back(q);
    }
    // GUDHI lists the pairs by decreasing length; dimension, then birth, is easier to read.
    std::stable_sort(p.pairs.begin(), p.pairs.end(), [](const PersistencePair& a, const PersistencePair& b) {
      return std::tie(a.dim, a.birth, a.death) < std::tie(b.dim, b.birth, b.death);
    });
    out.push_back(std::move(p));
  }
  return out;
}

Persistence RipsPersistence(const torch::Tensor& points, double max_edge) {
  return ComputePersistence(points, {}, {FiltrationScale{}}, max_edge).front();
}

torch::Tensor DiagramPoints(const torch::Tensor& points, const torch::Tensor& vertex_values, const Persistence& p,
                            int dim, const torch::Tensor& essential_death) {
  CriticalList list;
  std::vector<int64_t> essential;
  for (const auto& q : p.pairs) {
    if (q.dim != dim || (q.Essential() && !essential_death.defined())) continue;
    list.Add(0, q.born_at, p.scale);
    list.Add(0, q.Essential() ? q.born_at : q.dies_at, p.scale);  // an essential death replaced below
    essential.push_back(q.Essential());
  }
  if (essential.empty()) return torch::zeros({0, 2}, points.options());
  const auto v = CriticalValues(points.unsqueeze(0), vertex_values.defined() ? vertex_values.unsqueeze(0) : vertex_values, list)
                     .view({-1, 2});
  if (!essential_death.defined()) return v;
  const auto death = torch::where(LongTensor(essential, points.device()) != 0,
                                  essential_death.to(v.dtype()).expand({v.size(0)}), v.select(1, 1));
  return torch::stack({v.select(1, 0), death}, 1);
}

torch::Tensor MaxValue(const torch::Tensor& points, const torch::Tensor& vertex_values, const Persistence& p) {
  CriticalList list;
  list.Add(0, p.max_at, p.scale);
  return CriticalValues(points.unsqueeze(0), vertex_values.defined() ? vertex_values.unsqueeze(0) : vertex_values, list)
      .squeeze(0);
}

std::vector<std::pair<double, double>> FinitePairs(const Persistence& p, int dim) {
  std::vector<std::pair<double, double>> out;
  for (const auto& q : p.pairs) {
    if (q.dim == dim && !q.Essential()) out.emplace_back(q.birth, q.death);
  }
  return out;
}

double BottleneckDistance(const std::vector<std::pair<double, double>>& a,
                          const std::vector<std::pair<double, double>>& b) {
  if (a.empty() && b.empty()) return 0.0;
  return Gudhi::persistence_diagram::bottleneck_distance(a, b, /*e=*/0.0);
}

torch::Tensor SlicedWasserstein(const torch::Tensor& a, const std::vector<int64_t>& a_group, const torch::Tensor& b,
                                const std::vector<int64_t>& b_group, int64_t groups, int64_t directions) {
  if (directions < 1) throw BadInput(fmt::format("directions={}: expected >= 1", directions));
  const int64_t na = a.size(0), nb = b.size(0);
  const auto diagonal = [](const torch::Tensor& d) {
    const auto m = (d.select(1, 0) + d.select(1, 1)) / 2;
    return torch::stack({m, m}, 1);
  };
  // Rows: a, diag(b), b, diag(a), then one diagonal point (0, 0) that pads every group.
  const auto pool = torch::cat({a, diagonal(b), b, diagonal(a), torch::zeros({1, 2}, a.options())});
  std::vector<std::vector<int64_t>> x(groups), y(groups);
  for (int64_t r = 0; r < na; ++r) x[a_group[r]].push_back(r), y[a_group[r]].push_back(2 * nb + na + r);
  for (int64_t r = 0; r < nb; ++r) x[b_group[r]].push_back(na + r), y[b_group[r]].push_back(na + nb + r);
  const auto xa = Blocks(pool, x, 2 * (na + nb)), xb = Blocks(pool, y, 2 * (na + nb));  // [groups, S, 2]
  if (xa.size(1) == 0) return torch::zeros({groups}, a.options());
  const double pi = std::acos(-1.0);
  const auto theta = (torch::arange(directions, a.options()) + 0.5) * (pi / directions) - pi / 2;
  const auto lines = torch::stack({torch::cos(theta), torch::sin(theta)});  // [2, directions]
  const auto pa = std::get<0>(xa.matmul(lines).sort(1)), pb = std::get<0>(xb.matmul(lines).sort(1));
  return (pa - pb).abs().sum(1).mean(1);
}

torch::Tensor SlicedWasserstein(const torch::Tensor& a, const torch::Tensor& b, int64_t directions) {
  return SlicedWasserstein(a, std::vector<int64_t>(a.size(0), 0), b, std::vector<int64_t>(b.size(0), 0), 1, directions)[0];
}

torch::Tensor Landscapes(const torch::Tensor& diagrams, const std::vector<int64_t>& group, int64_t groups,
                         int64_t levels, const torch::Tensor& grids) {
  const int64_t n = diagrams.size(0), resolution = grids.size(1);
  std::vector<std::vector<int64_t>> members(groups);
  for (int64_t r = 0; r < n; ++r) members[group[r]].push_back(r);
  // Padding rows (0, 0): tents of height 0 everywhere.
  const auto d = Blocks(torch::cat({diagrams, torch::zeros({1, 2}, diagrams.options())}), members, n);
  const int64_t size = d.size(1);
  torch::Tensor top = torch::zeros({groups, 0, resolution}, grids.options());
  if (size > 0) {
    const auto t = grids.unsqueeze(1);  // [groups, 1, G]
    const auto tents = torch::clamp_min(torch::min(t - d.select(2, 0).unsqueeze(2), d.select(2, 1).unsqueeze(2) - t), 0);
    top = std::get<0>(tents.sort(1, /*descending=*/true)).slice(1, 0, std::min(size, levels));
  }
  if (top.size(1) < levels) top = torch::cat({top, torch::zeros({groups, levels - top.size(1), resolution}, top.options())}, 1);
  return top;
}

torch::Tensor Landscapes(const torch::Tensor& diagram, int64_t levels, const torch::Tensor& grid) {
  return Landscapes(diagram, std::vector<int64_t>(diagram.size(0), 0), 1, levels, grid.unsqueeze(0))[0];
}

namespace {

struct MapperGraph {
  int64_t nodes = 0, edges = 0, components = 0;
};

// distances [n, n]: the cloud's pairwise distances, the same matrix the scale was read from (so a
// distance equal to the scale is an edge, whatever the arithmetic). They are handed to GUDHI rather
// than the points: Cover_complex::set_graph_from_rips, given only points, caches its distance
// matrix in a file named "matrix_dist" in the working directory and reads that file back on the
// next call, whatever cloud that is (GUDHI 3.7.1), so every layer after the first, and every
// process sharing the directory, got another cloud's graph.
MapperGraph Mapper(const torch::Tensor& points, const torch::Tensor& distances, double scale,
                   const TopologyDiagnosticsOptions& o) {
  const auto x = points.to(torch::kDouble).contiguous();
  const int64_t n = x.size(0);
  if (n < 2) return {n, 0, n};
  const auto acc = x.accessor<double, 2>();
  const auto dcpu = distances.to(torch::kCPU, torch::kDouble).contiguous();
  const auto dacc = dcpu.accessor<double, 2>();
  std::vector<std::vector<double>> dist(n, std::vector<double>(n));
  std::vector<double> filter(n);
  for (int64_t i = 0; i < n; ++i) {
    double norm2 = 0;
    for (int64_t c = 0; c < x.size(1); ++c) norm2 += acc[i][c] * acc[i][c];
    filter[i] = std::sqrt(norm2);
    for (int64_t j = 0; j < n; ++j) dist[i][j] = dacc[i][j];
  }
  Gudhi::cover_complex::Cover_complex<std::vector<double>> mapper;
  mapper.set_type("Nerve");
  mapper.set_verbose(false);
  mapper.set_distances_from_range(dist);
  mapper.set_graph_from_rips(scale, Gudhi::Euclidean_distance());  // reads `dist`, computes nothing
  mapper.set_function_from_range(filter);
  mapper.set_color_from_range(filter);
  mapper.set_resolution_with_interval_number(static_cast<int>(o.mapper_intervals));
  mapper.set_gain(o.mapper_gain);
  mapper.set_cover_from_function();
  mapper.find_simplices();
  SimplexTree graph;
  mapper.create_complex(graph);

  // Nodes are cover elements with sparse ids; components by union-find over the edges.
  std::map<int, int> parent;
  for (auto v : graph.complex_vertex_range()) parent[v] = v;
  const std::function<int(int)> root = [&](int v) { return parent[v] == v ? v : parent[v] = root(parent[v]); };
  MapperGraph g;
  g.nodes = static_cast<int64_t>(parent.size());
  g.components = g.nodes;
  for (auto sh : graph.skeleton_simplex_range(1)) {
    if (graph.dimension(sh) != 1) continue;
    ++g.edges;
    const auto range = graph.simplex_vertex_range(sh);
    std::vector<int> uv(range.begin(), range.end());
    const int ru = root(uv[0]), rv = root(uv[1]);
    if (ru != rv) {
      parent[ru] = rv;
      --g.components;
    }
  }
  return g;
}

}  // namespace

std::map<std::string, double> TopologyDiagnostics(const torch::Tensor& flat_weights,
                                                  const std::vector<std::vector<int64_t>>& layer_shapes,
                                                  const TopologyDiagnosticsOptions& options) {
  if (!(options.scale >= 0)) throw BadInput(fmt::format("scale={}: expected >= 0 (0: the median distance)", options.scale));
  if (options.mapper_intervals < 2) {
    throw BadInput(fmt::format("mapper_intervals={}: expected >= 2", options.mapper_intervals));
  }
  if (!(options.mapper_gain > 0 && options.mapper_gain < 0.5)) {
    throw BadInput(fmt::format("mapper_gain={}: expected a value in (0, 0.5)", options.mapper_gain));
  }
  torch::NoGradGuard no_grad;
  const auto clouds = NeuronPointClouds(flat_weights.detach().to(torch::kCPU, torch::kDouble).flatten(), layer_shapes);
  if (!options.layer_names.empty() && options.layer_names.size() != clouds.size()) {
    throw BadInput(fmt::format("{} layer names for {} weight layers: expected one name per weight layer",
                               options.layer_names.size(), clouds.size()));
  }
  std::map<std::string, double> out;
  for (size_t l = 0; l < clouds.size(); ++l) {
    const auto& x = clouds[l].points;
    const std::string key = "topo/" + (options.layer_names.empty() ? fmt::format("layer{}", l) : options.layer_names[l]) + "/";
    const auto d = PairwiseDistances(x);
    double scale = options.scale;
    if (scale == 0 && x.size(0) > 1) {
      scale = d.masked_select(torch::ones_like(d, torch::kBool).triu(1)).median().item<double>();
    }
    const Persistence p = RipsPersistence(x);
    for (int dim = 0; dim <= 1; ++dim) {
      double alive = 0, total = 0;
      for (const auto& q : p.pairs) {
        if (q.dim != dim) continue;
        alive += q.birth <= scale && scale < q.death;
        if (!q.Essential()) total += q.death - q.birth;
      }
      out[key + fmt::format("betti{}", dim)] = alive;
      out[key + fmt::format("total_persistence{}", dim)] = total;
    }
    const MapperGraph g = Mapper(x, d, scale, options);
    out[key + "mapper_nodes"] = static_cast<double>(g.nodes);
    out[key + "mapper_edges"] = static_cast<double>(g.edges);
    out[key + "mapper_components"] = static_cast<double>(g.components);
  }
  return out;
}

}  // namespace tb
