// Weight-space losses of the merging report (section 4.5), between a predicted weight vector p
// and its target t, both [B, P] (a batch of flattened CNNs); every loss is the mean over B.
//  - mse: mean over entries of (p - t)^2.
//  - layerwise_normalized_mse: the report's 4.5.9, Σ_l (1/|Θ_l|) ||p_l − t_l||², each layer's
//    term divided by the target layer's variance (over the batch and the layer's entries) when
//    `normalize=variance` (the hyper-representation papers' layer-wise normalisation, Schürholt
//    et al. 2021; the default), not with `normalize=none` (the report's formula as written).
//  - quantile: the report's 4.5.1 pinball loss, mean of ρ_q(t − p), ρ_q(u) = u (q − 1{u < 0});
//    at q = 0.5 half the mean absolute error.
//  - norm_difference: the report's 4.5.6, | ||p||₂ − ||t||₂ |.
//  - mape: the report's 4.5.8, 100/P Σ |p − t| / (|t| + ε).
//  - fft_difference: the report's 4.5.11, 1/P Σ_k |F(p)_k − F(t)_k|, F the discrete Fourier
//    transform of the vector (complex modulus).
//  - autoregressive_mse: the report's 4.5.7, L_1 + Σ_{k≥2} λ L_k / (L_{k−1} + ε) over K
//    consecutive chunks of the vector (L_k the chunk's MSE): a chunk predicted worse than the one
//    before costs more.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {

WeightPair RequireWeights(const LossInputs& in, const std::string& loss) {
  if (!in.predicted.defined() || !in.target.defined()) {
    throw BadInput(fmt::format("loss {}: needs predicted and target weight vectors", loss));
  }
  WeightPair w{in.predicted.dim() == 1 ? in.predicted.unsqueeze(0) : in.predicted,
               in.target.dim() == 1 ? in.target.unsqueeze(0) : in.target, in.layer_bounds};
  if (w.predicted.dim() != 2 || w.predicted.sizes() != w.target.sizes()) {
    throw BadInput(fmt::format("loss {}: predicted {} and target {}: expected two [B, P] weight tensors of one shape", loss,
                               fmt::join(in.predicted.sizes(), "x"), fmt::join(in.target.sizes(), "x")));
  }
  const int64_t p = w.predicted.size(1);
  if (w.bounds.empty()) w.bounds = {0, p};
  bool ok = w.bounds.front() == 0 && w.bounds.back() == p;
  for (size_t i = 1; i < w.bounds.size(); ++i) ok = ok && w.bounds[i] > w.bounds[i - 1];
  if (!ok || w.bounds.size() < 2) {
    throw BadInput(fmt::format("loss {}: layer bounds {}: expected increasing offsets from 0 to {}", loss,
                               fmt::join(w.bounds, ","), p));
  }
  return w;
}

void DescribeModel(LossInputs& in, const ModelSpec& spec) {
  torch::NoGradGuard no_grad;
  const ModelPtr model = MakeModel(spec);
  in.layer_bounds = {0};
  in.layer_shapes.clear();
  in.layer_names.clear();
  for (const auto& item : model->named_parameters()) {
    in.layer_bounds.push_back(in.layer_bounds.back() + item.value().numel());
    in.layer_shapes.push_back(item.value().sizes().vec());
    in.layer_names.push_back(item.key());
  }
  in.arch = spec.arch;
  in.activation = spec.activation;
}

namespace {

struct NoLossOptions {
  void Bind(Options&) {}
};

class Mse : public LossWithOptions<NoLossOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "mse");
    return (w.predicted - w.target).pow(2).mean();
  }
};

struct LayerwiseOptions {
  std::string normalize = "variance";
  double eps = 1e-8;
  void Bind(Options& o) {
    o.Add("normalize", &normalize, "variance: each layer's term over the target layer's variance; none: the report's sum",
          {"variance", "none"});
    o.Add("eps", &eps, "added to each layer's variance");
  }
};

class LayerwiseNormalizedMse : public LossWithOptions<LayerwiseOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "layerwise_normalized_mse");
    if (!(opts().eps >= 0)) throw BadInput(fmt::format("eps={}: expected >= 0", opts().eps));
    torch::Tensor total = torch::zeros({}, w.predicted.options());
    for (size_t l = 0; l + 1 < w.bounds.size(); ++l) {
      const auto p = w.predicted.slice(1, w.bounds[l], w.bounds[l + 1]);
      const auto t = w.target.slice(1, w.bounds[l], w.bounds[l + 1]);
      torch::Tensor term = (p - t).pow(2).mean();
      if (opts().normalize == "variance") term = term / (t.detach().var(/*unbiased=*/false) + opts().eps);
      total = total + term;
    }
    return total;
  }
};

struct QuantileOptions {
  double q = 0.5;
  void Bind(Options& o) { o.Add("q", &q, "the quantile, in (0, 1)"); }
};

class Quantile : public LossWithOptions<QuantileOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "quantile");
    const double q = opts().q;
    if (!(q > 0 && q < 1)) throw BadInput(fmt::format("q={}: expected a value in (0, 1)", q));
    const auto u = w.target - w.predicted;
    return torch::max(q * u, (q - 1) * u).mean();
  }
};

class NormDifference : public LossWithOptions<NoLossOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "norm_difference");
    return (w.predicted.norm(2, 1) - w.target.norm(2, 1)).abs().mean();
  }
};

struct MapeOptions {
  double eps = 1e-6;
  void Bind(Options& o) { o.Add("eps", &eps, "added to |t| in the denominator"); }
};

class Mape : public LossWithOptions<MapeOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "mape");
    if (!(opts().eps > 0)) throw BadInput(fmt::format("eps={}: expected > 0", opts().eps));
    return 100.0 * ((w.predicted - w.target).abs() / (w.target.abs() + opts().eps)).mean();
  }
};

class FftDifference : public LossWithOptions<NoLossOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "fft_difference");
    // F is linear: F(p) − F(t) = F(p − t).
    return torch::fft::fft(w.predicted - w.target, /*n=*/c10::nullopt, /*dim=*/1).abs().mean();
  }
};

struct AutoregressiveOptions {
  int64_t chunks = 50;
  double lambda = 1.0;
  double eps = 1e-8;
  void Bind(Options& o) {
    o.Add("chunks", &chunks, "K consecutive chunks of the vector (the last takes the remainder); 50: the report's sequence length");
    o.Add("lambda", &lambda, "weight λ of every ratio term");
    o.Add("eps", &eps, "added to each ratio's denominator");
  }
};

class AutoregressiveMse : public LossWithOptions<AutoregressiveOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "autoregressive_mse");
    const auto& o = opts();
    const int64_t p = w.predicted.size(1);
    if (o.chunks < 1 || o.chunks > p) throw BadInput(fmt::format("chunks={}: expected 1..{}", o.chunks, p));
    if (!(o.eps > 0)) throw BadInput(fmt::format("eps={}: expected > 0", o.eps));
    const int64_t size = p / o.chunks;
    torch::Tensor total, previous;
    for (int64_t k = 0; k < o.chunks; ++k) {
      const int64_t end = k + 1 == o.chunks ? p : (k + 1) * size;
      const torch::Tensor lk = (w.predicted.slice(1, k * size, end) - w.target.slice(1, k * size, end)).pow(2).mean();
      total = k == 0 ? lk : total + o.lambda * lk / (previous + o.eps);
      previous = lk;
    }
    return total;
  }
};

}  // namespace

TB_REGISTER_LOSS(mse, Mse, "Weight MSE", "the merging report, 4.5");
TB_REGISTER_LOSS(layerwise_normalized_mse, LayerwiseNormalizedMse, "Layer-wise normalised MSE",
                 "the merging report, 4.5.9; Schürholt et al. 2021");
TB_REGISTER_LOSS(quantile, Quantile, "Quantile (pinball) loss", "the merging report, 4.5.1; Koenker & Bassett 1978");
TB_REGISTER_LOSS(norm_difference, NormDifference, "Difference of norms", "the merging report, 4.5.6");
TB_REGISTER_LOSS(mape, Mape, "Mean absolute percentage error", "the merging report, 4.5.8");
TB_REGISTER_LOSS(fft_difference, FftDifference, "Fourier difference", "the merging report, 4.5.11");
TB_REGISTER_LOSS(autoregressive_mse, AutoregressiveMse, "Auto-regressive MSE", "the merging report, 4.5.7");

}  // namespace tb
