// Functional losses of the merging report (section 4.5): they run the networks that the predicted
// and the target weight vectors p, t ([B, P] each) define, through experiments/models/functional.h,
// on a probe batch x_1 … x_N (LossInputs.probe), and compare how the networks behave rather than
// the vectors. Each loss is the mean over B. Needs LossInputs.arch/activation (DescribeModel).
//  - jacobian_frobenius: the report's 4.5.2, (1/N) Σ_n ||J_p(x_n) − J_t(x_n)||_F, J the Jacobian
//    [C, 784] of the logits (output=logits) or of the softmax (output=probs) w.r.t. the image.
//    projections=0: exact, from C vector-Jacobian products e_cᵀJ; projections=k: the Hutchinson
//    estimate ||A||_F² ≈ (1/k) Σ_j ||v_jᵀA||², v_j ~ N(0, I_C) drawn per network and image from
//    `seed` (the same v for p and t). Differentiable w.r.t. p (double backward).
//  - fisher: EWC's diagonal-Fisher-weighted distance (Kirkpatrick et al. 2017), not the report's
//    4.5.3 Fisher-Rao geodesic (an infimum over paths, not computable as written):
//    Σ_i F_i (p_i − t_i)² with normalize=none; with normalize=mean F is divided by its mean and
//    the sum by P, i.e. Σ_i F_i (p_i − t_i)² / Σ_i F_i, which is the MSE when F is uniform.
//    F = floor + (1/N) Σ_n (∂/∂t log p_t(y_n | x_n))², the diagonal Fisher of the TARGET network,
//    detached; y_n = LossInputs.labels when given (the empirical Fisher), else the target's own
//    argmax (a deterministic stand-in for the y ~ p_t(y | x) the true Fisher samples).
//  - contractive: the report's 4.5.4, the contractive auto-encoder penalty (Rifai et al. 2011)
//    λ Σ_layers Σ_units σ'(a_i)² ||w_i||², summed over the predicted network's hidden layers
//    (or `layer`) and mean over the probe images: per layer ||∂h/∂(layer input)||_F². σ'(a)
//    is the activation's derivative at the unit's pre-activation: h(1 − h) for sigmoid (the
//    report's formula), 1 − h² for tanh, the 0/1 step for relu. A conv unit is one channel at one
//    position, w_i the channel's kernel (after max pooling the unit's Jacobian is still that
//    kernel, placed at the pooled maximum). A regulariser on p; t is only checked for shape.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/losses/loss.h"
#include "experiments/models/functional.h"
#include "store/errors.h"

namespace tb {
namespace {

// The checked weight pair with the network they define and the probe, [N, 1, 28, 28] in p's dtype.
struct Networks {
  WeightPair w;
  ModelSpec spec;
  torch::Tensor probe;
};

Networks RequireNetworks(const LossInputs& in, const std::string& loss) {
  Networks nets{RequireWeights(in, loss), {}, {}};
  if (in.arch.empty() || in.activation.empty()) {
    throw BadInput(fmt::format("loss {}: set LossInputs.arch/activation (DescribeModel)", loss));
  }
  if (!in.probe.defined()) {
    throw BadInput(fmt::format("loss {}: set LossInputs.probe (images [N, 1, 28, 28]) to run the networks on", loss));
  }
  if (in.probe.dim() < 2 || in.probe.size(0) < 1 || in.probe.numel() != in.probe.size(0) * 784) {
    throw BadInput(fmt::format("loss {}: probe [{}]: expected images [N, 1, 28, 28]", loss, fmt::join(in.probe.sizes(), ", ")));
  }
  nets.spec.arch = in.arch;
  nets.spec.activation = in.activation;
  if (!in.layer_shapes.empty() && !in.layer_shapes.back().empty()) nets.spec.num_classes = in.layer_shapes.back()[0];
  nets.probe = in.probe.detach().reshape({in.probe.size(0), 1, 28, 28}).to(nets.w.predicted.options());
  return nets;
}

// The norm with gradient 0 at 0 (torch's sqrt has an infinite one there: identical networks
// would give NaN gradients).
torch::Tensor SafeSqrt(const torch::Tensor& x) {
  const auto positive = x > 0;
  return torch::where(positive, torch::where(positive, x, torch::ones_like(x)).sqrt(), torch::zeros_like(x));
}

// k·B·N·C standard normals from `seed` (Box-Muller over mt19937_64: the same draws on every
// platform and LibTorch version), as [k, B, N, C].
torch::Tensor GaussianDirections(int64_t k, int64_t b, int64_t n, int64_t c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };  // in (0, 1)
  std::vector<double> v(static_cast<size_t>(k * b * n * c));
  for (size_t i = 0; i < v.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), theta = 2.0 * 3.14159265358979323846 * uniform();
    v[i] = r * std::cos(theta);
    if (i + 1 < v.size()) v[i + 1] = r * std::sin(theta);
  }
  return torch::tensor(v, torch::kDouble).reshape({k, b, n, c});
}

// The rows vᵀJ of each network's output Jacobian w.r.t. its input, for the directions `dirs`
// [K, B, N, C]: [K, B, N, 784]. One forward on a per-network copy of the probe (so that the
// gradients of the B networks stay apart), then K vector-Jacobian products; with create_graph
// the rows stay differentiable w.r.t. `flat`.
torch::Tensor ProjectedJacobian(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& probe,
                                const torch::Tensor& dirs, bool probs) {
  const bool create_graph = torch::GradMode::is_enabled() && flat.requires_grad();
  torch::AutoGradMode enable(true);  // the Jacobian needs a graph even when the caller evaluates
  const int64_t b = flat.size(0), n = probe.size(0);
  auto images = probe.unsqueeze(0).expand({b, n, 1, 28, 28}).clone().requires_grad_(true);
  auto out = FunctionalLogits(spec, flat, images);  // [B, N, C]
  if (probs) out = torch::softmax(out, -1);
  std::vector<torch::Tensor> rows;
  for (int64_t k = 0; k < dirs.size(0); ++k) {
    rows.push_back(torch::autograd::grad({out}, {images}, {dirs[k]}, /*retain_graph=*/create_graph || k + 1 < dirs.size(0),
                                         create_graph)[0]
                       .reshape({b, n, 784}));
  }
  return torch::stack(rows);
}

struct JacobianOptions {
  std::string output = "logits";
  int64_t projections = 0;
  int64_t seed = 0;
  void Bind(Options& o) {
    o.Add("output", &output, "the Jacobian of the logits or of the softmax probabilities", {"logits", "probs"});
    o.Add("projections", &projections,
          "0: exact (C vector-Jacobian products per network); k > 0: Hutchinson estimate from k Gaussian directions");
    o.Add("seed", &seed, "seed of the random directions (projections > 0)");
  }
};

class JacobianFrobenius : public LossWithOptions<JacobianOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const auto& o = opts();
    if (o.projections < 0) throw BadInput(fmt::format("projections={}: expected 0 (exact) or a count > 0", o.projections));
    const Networks nets = RequireNetworks(in, "jacobian_frobenius");
    const int64_t b = nets.w.predicted.size(0), n = nets.probe.size(0), c = nets.spec.num_classes;
    torch::Tensor dirs;
    if (o.projections == 0) {
      dirs = torch::eye(c, nets.probe.options()).reshape({c, 1, 1, c}).expand({c, b, n, c});
    } else {
      dirs = GaussianDirections(o.projections, b, n, c, static_cast<uint64_t>(o.seed)).to(nets.probe.options());
    }
    const bool probs = o.output == "probs";
    const auto jp = ProjectedJacobian(nets.spec, nets.w.predicted, nets.probe, dirs, probs);
    const auto jt = ProjectedJacobian(nets.spec, nets.w.target, nets.probe, dirs, probs);
    auto squared = (jp - jt).square().sum(std::vector<int64_t>{0, 3});  // [B, N]
    if (o.projections > 0) squared = squared / static_cast<double>(o.projections);
    return SafeSqrt(squared).mean();
  }
};

// The diagonal Fisher [B, P] of every network in `flat` on `probe`, detached: per-sample
// gradients from one backward pass, through one copy of the network per (network, image).
torch::Tensor DiagonalFisherOf(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& probe,
                               const torch::Tensor& labels) {
  torch::AutoGradMode enable(true);
  const int64_t b = flat.size(0), n = probe.size(0), p = flat.size(1);
  auto copies = flat.detach().unsqueeze(1).expand({b, n, p}).reshape({b * n, p}).clone().requires_grad_(true);
  const auto images = probe.unsqueeze(0).expand({b, n, 1, 28, 28}).reshape({b * n, 1, 1, 28, 28});
  const auto logp = torch::log_softmax(FunctionalLogits(spec, copies, images).squeeze(1), -1);  // [B·N, C]
  const auto y = labels.defined() ? labels.to(logp.device()).repeat({b}) : logp.argmax(-1).detach();
  const auto nll = -logp.gather(1, y.unsqueeze(1)).sum();
  const auto grad = torch::autograd::grad({nll}, {copies})[0];
  return grad.square().reshape({b, n, p}).mean(1).detach();
}

struct FisherOptions {
  std::string normalize = "mean";
  double floor = 0.0;
  void Bind(Options& o) {
    o.Add("normalize", &normalize, "mean: F over its mean and the sum over P (uniform F gives the MSE); none: EWC's sum",
          {"mean", "none"});
    o.Add("floor", &floor, "added to every F_i (>= 0)");
  }
};

class Fisher : public LossWithOptions<FisherOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const auto& o = opts();
    if (!(o.floor >= 0)) throw BadInput(fmt::format("floor={}: expected >= 0", o.floor));
    const Networks nets = RequireNetworks(in, "fisher");
    const int64_t n = nets.probe.size(0), c = nets.spec.num_classes;
    if (in.labels.defined()) {
      if (in.labels.dim() != 1 || in.labels.size(0) != n || in.labels.scalar_type() != torch::kLong) {
        throw BadInput(fmt::format("loss fisher: labels [{}] {}: expected [N={}] int64 labels of the probe",
                                   fmt::join(in.labels.sizes(), ", "), c10::toString(in.labels.scalar_type()), n));
      }
      if (in.labels.min().item<int64_t>() < 0 || in.labels.max().item<int64_t>() >= c) {
        throw BadInput(fmt::format("loss fisher: labels in [{}, {}]: expected classes 0..{}", in.labels.min().item<int64_t>(),
                                   in.labels.max().item<int64_t>(), c - 1));
      }
    }
    const auto f = DiagonalFisherOf(nets.spec, nets.w.target, nets.probe, in.labels) + o.floor;
    const auto weighted = (f * (nets.w.predicted - nets.w.target).square()).sum(1);  // [B]
    if (o.normalize == "none") return weighted.mean();
    // An all-zero F (no information in the probe) gives 0, not 0/0.
    return (weighted / f.sum(1).clamp_min(std::numeric_limits<double>::min())).mean();
  }
};

struct ContractiveOptions {
  double lambda = 1e-3;
  std::string layer;
  void Bind(Options& o) {
    o.Add("lambda", &lambda, "weight λ of the penalty (>= 0)");
    o.Add("layer", &layer, "one hidden layer by name (conv1, fc1, ...); empty: every hidden layer");
  }
};

class Contractive : public LossWithOptions<ContractiveOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const auto& o = opts();
    if (!(o.lambda >= 0)) throw BadInput(fmt::format("lambda={}: expected >= 0", o.lambda));
    const Networks nets = RequireNetworks(in, "contractive");
    const FunctionalPass pass = FunctionalForward(nets.spec, nets.w.predicted, nets.probe);
    if (!o.layer.empty() && std::find(pass.names.begin(), pass.names.end(), o.layer) == pass.names.end()) {
      throw BadInput(fmt::format("layer={}: expected a hidden layer of {} ({}) or empty", o.layer, nets.spec.arch,
                                 fmt::join(pass.names, ", ")));
    }
    torch::Tensor total = torch::zeros({}, nets.w.predicted.options());
    for (size_t l = 0; l < pass.names.size(); ++l) {
      if (!o.layer.empty() && pass.names[l] != o.layer) continue;
      auto slope = ActivationDerivative(nets.spec.activation, pass.pre[l]).square();  // [B, N, units(, H, W)]
      if (slope.dim() == 5) slope = slope.sum(std::vector<int64_t>{3, 4});  // a channel's positions share its kernel
      const auto kernel = pass.weights[l].flatten(2).square().sum(2);  // [B, units]
      total = total + (slope * kernel.unsqueeze(1)).sum(2).mean();
    }
    return o.lambda * total;
  }
};

}  // namespace

TB_REGISTER_LOSS(jacobian_frobenius, JacobianFrobenius, "Jacobian Frobenius distance", "the merging report, 4.5.2");
TB_REGISTER_LOSS(fisher, Fisher, "Diagonal-Fisher-weighted distance",
                 "the merging report, 4.5.3 (EWC's diagonal form); Kirkpatrick et al. 2017");
TB_REGISTER_LOSS(contractive, Contractive, "Contractive penalty", "the merging report, 4.5.4; Rifai et al. 2011");

}  // namespace tb
