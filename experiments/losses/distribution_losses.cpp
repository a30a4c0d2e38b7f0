// Distributional weight-space losses of the merging report (4.5.5, 4.5.10, 4.5.14 and the optimal
// transport primer, 5.3), between a predicted weight vector p and its target t, both [B, P]. Each
// row is read as an empirical distribution: of its P scalar values, or (`dim` = d) of its P / d
// points of d consecutive values, each of mass 1 / n. Every loss is the mean over B.
//  - jensen_shannon: the report's 4.5.10, sqrt(½ KL(h_p ‖ m) + ½ KL(h_t ‖ m)), m = (h_p + h_t) / 2,
//    natural log, between soft histograms: K bins of width w = (hi − lo) / K on [lo, hi], centres
//    c_k; each value x spreads unit mass softmax_k(−(x − c_k)² / 2σ²) over the bins (a Gaussian
//    kernel normalised over the bins: values outside [lo, hi] land in the edge bins), h = the mean
//    over the row's values. [lo, hi] defaults to the min / max of both rows (detached; widened by
//    ±½ when they coincide), σ to one bin width. Differentiable in p through the kernel; the
//    range is a constant of the gradient.
//  - sinkhorn: the report's 4.5.5, entropic OT on scalar values with cost C_ij = (x_i − y_j)² and
//    uniform marginals. S_ε(p, t) = ⟨P_ε, C⟩, the transport cost of the entropic plan
//    P_ε = argmin ⟨P, C⟩ − ε H(P) (POT's sinkhorn2; ε absolute, on the squared-cost scale), by
//    Sinkhorn's iterations as POT's sinkhorn_log runs them (g then f each iteration, stopped when
//    every row's column-marginal error ‖P^T 1 − 1/n‖₂, checked every 10th iteration at the final
//    ε, is below `tolerance`). solver=log: each step a logsumexp; solver=stabilised (default):
//    the same iterates by matrix-vector scaling steps, absorbed into log-domain potentials by a
//    logsumexp step whenever a scaling leaves [e^-τ, e^τ] (Schmitzer 2019), ~10x faster and
//    without an n x m tensor per iteration for backward. ε-scaling by default (iteration k at
//    max(ε, max C · scaling^k)): plain Sinkhorn at small ε crawls, its error falling like 1/k;
//    scaling=0 is POT's plain scheme.
//    debias: S_ε(p, t) − ½ S_ε(p, p) − ½ S_ε(t, t) (Feydy et al. 2019's Sinkhorn divergence with
//    the transport cost, 0 for identical inputs). Gradients by autograd through the unrolled
//    iterations: exact for the value returned (solver=log keeps one [B, n, n] tensor per
//    half-iteration for backward, stabilised one per absorption); `points` caps n.
//  - sliced_wasserstein: SW_p = (mean_θ W_p^p(⟨θ, x⟩, ⟨θ, y⟩))^(1/p) over `projections` unit
//    directions θ (normalised rows of torch::randn({K, d}) from a CPU generator seeded with
//    `seed`, in double), with the 1-D W_p^p = mean_i |sort(x)_i − sort(y)_i|^p. For dim = 1 it is
//    the exact 1-D W_p of the values (no directions drawn).
//  - gromov_wasserstein: the report's 4.5.14 with square loss, uniform marginals and intra-space
//    distances C1_ik = ‖x_i − x_k‖, C2_jl = ‖y_j − y_l‖: the cost
//    ⟨L ⊗ T, T⟩ = Σ_ijkl (C1_ik − C2_jl)² T_ij T_kl of the plan T of the entropic scheme of
//    Peyré, Cuturi & Solomon 2016, as POT's entropic_gromov_wasserstein2 runs it: T_0 = 1/(n m),
//    then T ← Sinkhorn_ε(tens), tens = 2 (constC − C1 T (2 C2)^T), constC_ij = mean_k C1_ik² +
//    mean_l C2_jl² (each projection by sinkhorn's solver and ε-scaling; POT's is plain
//    Sinkhorn-Knopp), stopped when ‖T − T_prev‖_F, checked every 10th outer iteration, is below
//    `tolerance` (which also stops each projection). The gradient holds T fixed (the
//    envelope theorem): ⟨∂L ⊗ T, T⟩, exact for the entropic objective at a stationary T, within
//    O(ε) of the cost's own gradient (and equal to it as T tends to a permutation).
// `points` = n (sinkhorn, gromov_wasserstein; 0: all): keeps n of the N points of each row, those
// at ranks ⌊(k + ½) N / n⌋, k < n, of the sorted values for scalar points (evenly spaced
// quantiles), in the vector's order for d-dim points.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

constexpr double kTiny = 1e-30;

// x^power for x ≥ 0, with value and gradient 0 where x ≤ kTiny (a root's derivative is infinite
// at 0, which would turn identical inputs' zero gradient into NaN).
torch::Tensor SafePow(const torch::Tensor& x, double power) {
  return torch::where(x > kTiny, x.clamp_min(kTiny).pow(power), torch::zeros_like(x));
}

// The rows of w [B, P] as B sets of P / dim points: [B, N, dim].
torch::Tensor AsPoints(const torch::Tensor& w, int64_t dim) {
  if (dim < 1 || w.size(1) % dim != 0) {
    throw BadInput(fmt::format("dim={}: expected a divisor of the vector length {}", dim, w.size(1)));
  }
  return w.reshape({w.size(0), w.size(1) / dim, dim});
}

// `points` of the N points of each row of x [B, N, d] (0: all), as the header says.
torch::Tensor Subsample(const torch::Tensor& x, int64_t points) {
  const int64_t n = x.size(1);
  if (points < 0 || points > n) throw BadInput(fmt::format("points={}: expected 0 (all) or 1..{}", points, n));
  if (points == 0 || points == n) return x;
  std::vector<int64_t> ranks(points);
  for (int64_t k = 0; k < points; ++k) ranks[k] = (2 * k + 1) * n / (2 * points);
  const auto index = torch::tensor(ranks, torch::kLong).to(x.device());
  return (x.size(2) == 1 ? std::get<0>(x.sort(1)) : x).index_select(1, index);
}

torch::Tensor SquaredDistances(const torch::Tensor& x, const torch::Tensor& y) {  // [B, n, d], [B, m, d]
  return (x.unsqueeze(2) - y.unsqueeze(1)).pow(2).sum(3);
}

torch::Tensor Distances(const torch::Tensor& x) {  // ‖x_i − x_k‖, [B, n, n]
  if (x.size(2) == 1) return (x - x.transpose(1, 2)).abs();
  return SafePow(SquaredDistances(x, x), 0.5);
}

void CheckSolver(double epsilon, int64_t iterations, double tolerance, const char* iterations_name) {
  if (!(epsilon > 0)) throw BadInput(fmt::format("epsilon={}: expected > 0", epsilon));
  if (iterations < 1) throw BadInput(fmt::format("{}={}: expected >= 1", iterations_name, iterations));
  if (!(tolerance >= 0)) throw BadInput(fmt::format("tolerance={}: expected >= 0 (0: run every iteration)", tolerance));
}

void CheckScaling(double scaling) {
  if (!(scaling >= 0 && scaling < 1)) throw BadInput(fmt::format("scaling={}: expected a value in [0, 1)", scaling));
}

// The entropic plan for cost [B, n, m] and uniform marginals, by log-domain Sinkhorn batched over
// B, in POT's sinkhorn_log's variables (f / ε + log a, g / ε + log b), every reduction along a
// contiguous last dimension. scaling > 0: ε-scaling, the k-th iteration at max(ε, max C ·
// scaling^k), so that small ε starts from the potentials of a larger one.
torch::Tensor LogSinkhornPlan(const torch::Tensor& cost, double epsilon, int64_t iterations, double tolerance,
                              double scaling) {
  const int64_t batch = cost.size(0), n = cost.size(1), m = cost.size(2);
  const double log_a = -std::log(static_cast<double>(n)), log_b = -std::log(static_cast<double>(m));
  double eps = scaling > 0 ? std::max(epsilon, cost.detach().max().item<double>()) : epsilon;
  const torch::Tensor cost_t = cost.transpose(1, 2).contiguous();
  torch::Tensor kernel = -cost / eps, kernel_t = -cost_t / eps;  // log Gibbs kernel, and transposed
  torch::Tensor f = torch::zeros({batch, 1, n}, cost.options()), g = torch::zeros({batch, 1, m}, cost.options());
  for (int64_t i = 0; i < iterations; ++i) {
    g = log_b - torch::logsumexp(kernel_t + f, 2).unsqueeze(1);
    f = log_a - torch::logsumexp(kernel + g, 2).unsqueeze(1);
    if (tolerance > 0 && eps == epsilon && i % 10 == 0) {
      torch::NoGradGuard no_grad;
      const auto columns = (kernel_t + f).exp().sum(2) * g.squeeze(1).exp();
      if ((columns - 1.0 / m).norm(2, 1).max().item<double>() < tolerance) break;
    }
    const double next_eps = std::max(epsilon, eps * scaling);
    if (next_eps != eps) {  // the same potentials in cost units, in the variables of the next ε
      f = (f - log_a) * (eps / next_eps) + log_a;
      g = (g - log_b) * (eps / next_eps) + log_b;
      kernel = -cost / next_eps;
      kernel_t = -cost_t / next_eps;
      eps = next_eps;
    }
  }
  return (kernel + f.transpose(1, 2) + g).exp();
}

// The same plan by Sinkhorn-Knopp on the kernel K = a b exp((f ⊕ g − C) / ε), its scalings u, v
// absorbed into the log-domain potentials f, g (K recomputed) whenever one leaves [e^-τ, e^τ] or
// ε changes, and a step redone by logsumexp where a product underflows (Schmitzer 2019's
// stabilised Sinkhorn): the speed of matrix-vector products and the range of the log domain,
// LogSinkhornPlan's iterates up to rounding. Autograd keeps vectors per step, K per absorption.
torch::Tensor StabilisedSinkhornPlan(const torch::Tensor& cost, double epsilon, int64_t iterations, double tolerance,
                                     double scaling) {
  const int64_t batch = cost.size(0), n = cost.size(1), m = cost.size(2);
  const double log_a = -std::log(static_cast<double>(n)), log_b = -std::log(static_cast<double>(m));
  const double tau = cost.scalar_type() == torch::kDouble ? 100.0 : 20.0;
  double eps = scaling > 0 ? std::max(epsilon, cost.detach().max().item<double>()) : epsilon;
  torch::Tensor f = torch::zeros({batch, n, 1}, cost.options()), g = torch::zeros({batch, 1, m}, cost.options());
  torch::Tensor u = torch::ones_like(f), v = torch::ones_like(g);
  torch::Tensor kernel = (-cost / eps + (log_a + log_b)).exp();
  const auto absorb = [&](double into, double next) {  // the plan unchanged, carried by f and g at ε = into
    f = f + into * u.log();
    g = g + into * v.log();
    u = torch::ones_like(f);
    v = torch::ones_like(g);
    kernel = ((f + g - cost) / next + (log_a + log_b)).exp();
  };
  const auto log_range = [](const torch::Tensor& x, const torch::Tensor& y) {  // max |log| of both, NaN kept
    torch::NoGradGuard no_grad;
    return torch::maximum(x.log().abs().max(), y.log().abs().max()).item<double>();
  };
  for (int64_t i = 0; i < iterations; ++i) {
    const auto v_next = (1.0 / m) / torch::matmul(u.transpose(1, 2), kernel);
    const auto u_next = (1.0 / n) / torch::matmul(kernel, v_next.transpose(1, 2));
    double largest = log_range(u_next, v_next);
    if (std::isfinite(largest)) {
      u = u_next;
      v = v_next;
    } else {  // a product underflowed: this step in the log domain, from the row potential f + ε log u
      g = -eps * torch::logsumexp((f + eps * u.log() - cost) / eps + log_a, 1, /*keepdim=*/true);
      f = -eps * torch::logsumexp((g - cost) / eps + log_b, 2, /*keepdim=*/true);
      u = torch::ones_like(f);
      v = torch::ones_like(g);
      kernel = ((f + g - cost) / eps + (log_a + log_b)).exp();
      largest = 0;
    }
    if (tolerance > 0 && eps == epsilon && i % 10 == 0) {
      torch::NoGradGuard no_grad;
      const auto columns = v * torch::matmul(u.transpose(1, 2), kernel);
      if ((columns - 1.0 / m).norm(2, {1, 2}).max().item<double>() < tolerance) break;
    }
    const double next_eps = std::max(epsilon, eps * scaling);
    if (next_eps != eps || largest > tau) absorb(eps, next_eps);
    eps = next_eps;
  }
  return u * kernel * v;
}

const std::vector<std::string> kSolvers = {"stabilised", "log"};
const char* const kSolverHelp =
    "stabilised: Sinkhorn-Knopp steps absorbed into log-domain potentials (fast, light on memory); "
    "log: every step a logsumexp";

torch::Tensor Plan(const std::string& solver, const torch::Tensor& cost, double epsilon, int64_t iterations,
                   double tolerance, double scaling) {
  return solver == "log" ? LogSinkhornPlan(cost, epsilon, iterations, tolerance, scaling)
                         : StabilisedSinkhornPlan(cost, epsilon, iterations, tolerance, scaling);
}

struct JensenShannonOptions {
  int64_t bins = 64;
  std::string range = "auto";
  double bandwidth = 0;
  void Bind(Options& o) {
    o.Add("bins", &bins, "K histogram bins over the range");
    o.Add("range", &range, "lo,hi of the bins; auto: the min and max of both vectors, per row");
    o.Add("bandwidth", &bandwidth, "σ of the Gaussian kernel; 0: one bin width");
  }
};

class JensenShannon : public LossWithOptions<JensenShannonOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "jensen_shannon");
    const auto& o = opts();
    if (o.bins < 1) throw BadInput(fmt::format("bins={}: expected >= 1", o.bins));
    if (!(o.bandwidth >= 0)) throw BadInput(fmt::format("bandwidth={}: expected >= 0 (0: one bin width)", o.bandwidth));
    torch::Tensor lo, hi;
    if (o.range == "auto") {
      const auto both = torch::cat({w.predicted, w.target}, 1).detach();
      lo = std::get<0>(both.min(1, /*keepdim=*/true));
      hi = std::get<0>(both.max(1, /*keepdim=*/true));
      const auto flat = hi <= lo;  // one value only: a unit-wide range around it
      lo = torch::where(flat, lo - 0.5, lo);
      hi = torch::where(flat, hi + 0.5, hi);
    } else {
      const auto [a, b] = ParseRange(o.range);
      lo = torch::full({w.predicted.size(0), 1}, a, w.predicted.options());
      hi = torch::full({w.predicted.size(0), 1}, b, w.predicted.options());
    }
    const auto width = (hi - lo) / static_cast<double>(o.bins);                                  // [B, 1]
    const auto centres = lo + width * (torch::arange(o.bins, w.predicted.options()) + 0.5);      // [B, K]
    const auto sigma = o.bandwidth > 0 ? torch::full_like(width, o.bandwidth) : width;         // [B, 1]
    const auto histogram = [&](const torch::Tensor& x) {                                       // [B, K]
      const auto d = x.unsqueeze(2) - centres.unsqueeze(1);                                    // [B, P, K]
      return torch::softmax(-d.pow(2) / (2 * sigma.pow(2)).unsqueeze(1), 2).mean(1);
    };
    const auto hp = histogram(w.predicted), ht = histogram(w.target);
    const auto log_m = ((hp + ht) / 2).clamp_min(kTiny).log();
    const auto kl = [&](const torch::Tensor& h) { return (h * (h.clamp_min(kTiny).log() - log_m)).sum(1); };
    return SafePow(0.5 * kl(hp) + 0.5 * kl(ht), 0.5).mean();
  }

 private:
  static std::pair<double, double> ParseRange(const std::string& text) {
    const auto comma = text.find(',');
    char* end_lo = nullptr;
    char* end_hi = nullptr;
    const std::string lo_text = text.substr(0, comma);
    const std::string hi_text = comma == std::string::npos ? "" : text.substr(comma + 1);
    const double lo = std::strtod(lo_text.c_str(), &end_lo), hi = std::strtod(hi_text.c_str(), &end_hi);
    if (comma == std::string::npos || lo_text.empty() || hi_text.empty() || *end_lo != '\0' || *end_hi != '\0' ||
        !std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi)) {
      throw BadInput(fmt::format("range={}: expected auto or lo,hi with lo < hi", text));
    }
    return {lo, hi};
  }
};

struct SinkhornOptions {
  double epsilon = 1e-2;
  int64_t iterations = 100;
  double tolerance = 1e-9;
  bool debias = true;
  int64_t points = 0;
  double scaling = 0.5;
  std::string solver = "stabilised";
  void Bind(Options& o) {
    o.Add("epsilon", &epsilon, "entropic regularisation ε, absolute, on the scale of the squared cost");
    o.Add("iterations", &iterations, "most Sinkhorn iterations");
    o.Add("tolerance", &tolerance, "stop when the column-marginal error (checked every 10th iteration) is below; 0: never");
    o.Add("debias", &debias, "the Sinkhorn divergence S(p,t) - S(p,p)/2 - S(t,t)/2 (0 for identical inputs)");
    o.Add("points", &points, "n evenly spaced quantiles of each vector's values; 0: all P");
    o.Add("scaling", &scaling, "ε-scaling: iteration k at max(ε, max C · scaling^k), in [0, 1); 0: plain Sinkhorn (POT's)");
    o.Add("solver", &solver, kSolverHelp, kSolvers);
  }
};

class Sinkhorn : public LossWithOptions<SinkhornOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "sinkhorn");
    const auto& o = opts();
    CheckSolver(o.epsilon, o.iterations, o.tolerance, "iterations");
    CheckScaling(o.scaling);
    const auto x = Subsample(AsPoints(w.predicted, 1), o.points), y = Subsample(AsPoints(w.target, 1), o.points);
    const int64_t batch = x.size(0);
    // The debiasing problems (p, p) and (t, t) ride in the same batch as (p, t).
    const auto xs = o.debias ? torch::cat({x, x, y}) : x, ys = o.debias ? torch::cat({y, x, y}) : y;
    const auto cost = SquaredDistances(xs, ys);
    const auto s = (Plan(o.solver, cost, o.epsilon, o.iterations, o.tolerance, o.scaling) * cost).sum({1, 2});
    if (!o.debias) return s.mean();
    return (s.slice(0, 0, batch) - 0.5 * s.slice(0, batch, 2 * batch) - 0.5 * s.slice(0, 2 * batch)).mean();
  }
};

struct SlicedOptions {
  int64_t projections = 64;
  int64_t seed = 0;
  double p = 2;
  int64_t dim = 1;
  void Bind(Options& o) {
    o.Add("projections", &projections, "K random unit directions (dim > 1)");
    o.Add("seed", &seed, "seed of the directions' generator");
    o.Add("p", &p, "the order of W_p, >= 1");
    o.Add("dim", &dim, "d: points of d consecutive values; 1: the exact 1-D W_p of the values");
  }
};

class SlicedWasserstein : public LossWithOptions<SlicedOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "sliced_wasserstein");
    const auto& o = opts();
    if (o.projections < 1) throw BadInput(fmt::format("projections={}: expected >= 1", o.projections));
    if (o.seed < 0) throw BadInput(fmt::format("seed={}: expected >= 0", o.seed));
    if (!(o.p >= 1)) throw BadInput(fmt::format("p={}: expected >= 1", o.p));
    auto x = AsPoints(w.predicted, o.dim), y = AsPoints(w.target, o.dim);  // [B, N, d]
    if (o.dim > 1) {
      auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(o.seed));
      auto theta = torch::randn({o.projections, o.dim}, generator, torch::kDouble);
      theta = (theta / theta.norm(2, 1, /*keepdim=*/true)).to(w.predicted.options()).t();  // [d, K]
      x = x.matmul(theta);
      y = y.matmul(theta);
    }
    const auto gap = (std::get<0>(x.sort(1)) - std::get<0>(y.sort(1))).abs();  // [B, N, K]
    const auto wp = (o.p == 1 ? gap : gap.pow(o.p)).mean({1, 2});
    return SafePow(wp, 1 / o.p).mean();
  }
};

struct GromovOptions {
  double epsilon = 1e-2;
  int64_t iterations = 20;
  int64_t sinkhorn_iterations = 100;
  double tolerance = 1e-9;
  int64_t points = 0;
  int64_t dim = 1;
  double scaling = 0.5;
  std::string solver = "stabilised";
  void Bind(Options& o) {
    o.Add("epsilon", &epsilon, "entropic regularisation ε of each Sinkhorn projection, absolute");
    o.Add("iterations", &iterations, "most outer (mirror-descent) iterations");
    o.Add("sinkhorn_iterations", &sinkhorn_iterations, "most Sinkhorn iterations per projection");
    o.Add("tolerance", &tolerance, "stop rule of both loops (as POT's tol and stopThr); 0: never stop early");
    o.Add("points", &points, "n points of each vector (quantiles for dim 1, evenly spaced for dim > 1); 0: all");
    o.Add("dim", &dim, "d: points of d consecutive values");
    o.Add("scaling", &scaling, "ε-scaling of each projection, as sinkhorn's; 0: plain Sinkhorn (POT's)");
    o.Add("solver", &solver, kSolverHelp, kSolvers);
  }
};

class GromovWasserstein : public LossWithOptions<GromovOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "gromov_wasserstein");
    const auto& o = opts();
    CheckSolver(o.epsilon, o.iterations, o.tolerance, "iterations");
    CheckSolver(o.epsilon, o.sinkhorn_iterations, o.tolerance, "sinkhorn_iterations");
    CheckScaling(o.scaling);
    const auto c1 = Distances(Subsample(AsPoints(w.predicted, o.dim), o.points));
    const auto c2 = Distances(Subsample(AsPoints(w.target, o.dim), o.points));
    const int64_t n = c1.size(1), m = c2.size(1);
    // constC − C1 T (2 C2)^T: POT's tensor_product for the square loss; constC from the marginals.
    const auto product = [](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& t) {
      const auto constant = a.pow(2).mean(2).unsqueeze(2) + b.pow(2).mean(2).unsqueeze(1);
      return torch::baddbmm(constant, torch::bmm(a, t), b.transpose(1, 2), /*beta=*/1, /*alpha=*/-2);
    };
    torch::Tensor plan = torch::full({c1.size(0), n, m}, 1.0 / static_cast<double>(n * m), c1.options());
    {
      torch::NoGradGuard no_grad;  // the plan is a constant of the gradient (the header says why)
      const auto d1 = c1.detach(), d2 = c2.detach();
      for (int64_t i = 0; i < o.iterations; ++i) {
        // Sinkhorn_ε(2 tens) is Sinkhorn_{ε/2}(tens).
        const auto next =
            Plan(o.solver, product(d1, d2, plan), o.epsilon / 2, o.sinkhorn_iterations, o.tolerance, o.scaling);
        const bool check = o.tolerance > 0 && i % 10 == 0;
        const double change = check ? (next - plan).norm(2, {1, 2}).max().item<double>() : 0;
        plan = next;
        if (check && change < o.tolerance) break;
      }
    }
    return (product(c1, c2, plan) * plan).sum({1, 2}).mean();
  }
};

}  // namespace

TB_REGISTER_LOSS(jensen_shannon, JensenShannon, "Jensen-Shannon distance of soft histograms",
                 "the merging report, 4.5.10; Lin 1991");
TB_REGISTER_LOSS(sinkhorn, Sinkhorn, "Sinkhorn divergence (entropic OT)",
                 "the merging report, 4.5.5; Cuturi 2013; Feydy et al. 2019");
TB_REGISTER_LOSS(sliced_wasserstein, SlicedWasserstein, "Sliced Wasserstein distance",
                 "the merging report, 5.3; Rabin et al. 2011; Bonneel et al. 2015");
TB_REGISTER_LOSS(gromov_wasserstein, GromovWasserstein, "Entropic Gromov-Wasserstein",
                 "the merging report, 4.5.14; Peyré, Cuturi & Solomon 2016");

}  // namespace tb
