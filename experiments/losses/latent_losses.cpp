// Losses on the learned merger's latents (LossInputs.latent, set while transformer_merge trains),
// and the report's recommended composite.
//  - latent_consistency: the report's 4.5.16, Σ_k L_Z^(k) + Σ_k 2 L_pred^(k) / (L_x1^(k) + L_x2^(k)),
//    k over the two encoders. With z^(k)(w) encoder k's mean-pooled encoding of a weight vector:
//    L_Z^(k) = L_pred^(k) = MSE(z^(k)(p), z^(k)(t)) (the prediction's latent pulled to the target's;
//    the report names the two terms apart but defines both as this distance), and
//    L_xj^(k) = MSE(z^(k)(W_j), z^(k)(t)), the inputs' distance to the target (detached): the ratio
//    asks the prediction to be closer to the target than the inputs are. The target's and the
//    inputs' encodings are detached, so the encoders cannot satisfy the loss by collapsing the
//    target side. Plus `reconstruction` · MSE(p, t) (default 1): a latent loss alone does not pin
//    the weights (0: the report's form).
//  - contrastive: NT-Xent (Chen et al. 2020; the hyper-representation papers' L_c, Schürholt et
//    al. 2021) on the neck: for each of the batch's B pairs, its neck and the neck of the same pair
//    with hidden neurons permuted are positives, the other 2B − 2 necks negatives; cosine
//    similarity over temperature τ, the mean of the 2B cross-entropies.
//  - composite: the report's recommended L = β L_MSE + (1 − β) L_c + α L_Topological + γ R, each
//    term a registered loss named in the options (defaults: layerwise_normalized_mse,
//    contrastive, persistence, fisher; "none" drops a term; R's ½ is γ = 0.5).
#include <cmath>

#include <fmt/format.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

LatentAccess& RequireLatent(const LossInputs& in, const std::string& loss) {
  if (!in.latent) {
    throw BadInput(fmt::format("loss {}: needs the learned merger's latents (LossInputs.latent: it trains "
                               "transformer_merge, and is not defined between two weight vectors alone)", loss));
  }
  return *in.latent;
}

struct LatentConsistencyOptions {
  double reconstruction = 1.0;
  double eps = 1e-8;
  void Bind(Options& o) {
    o.Add("reconstruction", &reconstruction, "weight of the added weight-space MSE (0: the report's latent terms only)");
    o.Add("eps", &eps, "added to the ratio's denominator");
  }
};

class LatentConsistency : public LossWithOptions<LatentConsistencyOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "latent_consistency");
    LatentAccess& z = RequireLatent(in, "latent_consistency");
    const auto& o = opts();
    if (!(o.reconstruction >= 0)) throw BadInput(fmt::format("reconstruction={}: expected >= 0", o.reconstruction));
    if (!(o.eps > 0)) throw BadInput(fmt::format("eps={}: expected > 0", o.eps));
    torch::Tensor total = o.reconstruction * (w.predicted - w.target).pow(2).mean();
    for (int k = 1; k <= 2; ++k) {
      const torch::Tensor target = z.Encode(k, w.target).detach();
      const torch::Tensor lz = (z.Encode(k, w.predicted) - target).pow(2).mean();
      const torch::Tensor lx1 = (z.Encode(k, z.Input(1)).detach() - target).pow(2).mean();
      const torch::Tensor lx2 = (z.Encode(k, z.Input(2)).detach() - target).pow(2).mean();
      total = total + lz + 2 * lz / (lx1 + lx2 + o.eps);
    }
    return total;
  }
};

struct ContrastiveOptions {
  double temperature = 0.1;
  void Bind(Options& o) { o.Add("temperature", &temperature, "τ of the cosine similarities"); }
};

}  // namespace

// NT-Xent between two views [B, k] (rows i of a and b are positives).
torch::Tensor NtXent(const torch::Tensor& a, const torch::Tensor& b, double temperature) {
  const int64_t n = a.size(0);
  const torch::Tensor z = torch::nn::functional::normalize(torch::cat({a, b}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor sim = z.matmul(z.t()) / temperature;
  sim = sim - 1e9 * torch::eye(2 * n, sim.options());  // a view is not its own negative
  const torch::Tensor positive = torch::cat({torch::arange(n, 2 * n), torch::arange(0, n)}).to(a.device());
  return torch::nn::functional::cross_entropy(sim, positive);
}

namespace {

class Contrastive : public LossWithOptions<ContrastiveOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    LatentAccess& z = RequireLatent(in, "contrastive");
    if (!(opts().temperature > 0)) throw BadInput(fmt::format("temperature={}: expected > 0", opts().temperature));
    const torch::Tensor a = z.Neck(), b = z.AugmentedNeck();
    if (a.size(0) < 2) throw BadInput("loss contrastive: a batch of 1 pair has no negatives (expected merger.batch_size >= 2)");
    return NtXent(a, b, opts().temperature);
  }
};

struct CompositeOptions {
  std::string reconstruction = "layerwise_normalized_mse", contrastive = "contrastive", topological = "persistence",
              regularizer = "fisher";
  double beta = 0.9, alpha = 0.1, gamma = 0.5;
  void Bind(Options& o) {
    o.Add("reconstruction", &reconstruction, "L_MSE: a registered loss (none: dropped)");
    o.Add("contrastive", &contrastive, "L_c: a registered loss (none: dropped)");
    o.Add("topological", &topological, "L_Topological: a registered loss (none: dropped)");
    o.Add("regularizer", &regularizer, "R: a registered loss (none: dropped)");
    o.Add("beta", &beta, "β: L_MSE's weight, (1 − β) L_c's");
    o.Add("alpha", &alpha, "α: the topological term's weight");
    o.Add("gamma", &gamma, "γ: R's weight (the report's ½)");
  }
};

class Composite : public LossWithOptions<CompositeOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const auto& o = opts();
    if (!(o.beta >= 0 && o.beta <= 1)) throw BadInput(fmt::format("beta={}: expected a value in [0, 1]", o.beta));
    if (!(o.alpha >= 0) || !(o.gamma >= 0)) {
      throw BadInput(fmt::format("alpha={} gamma={}: expected weights >= 0", o.alpha, o.gamma));
    }
    torch::Tensor total;
    for (const auto& [option, name, weight] :
         {std::tuple{"reconstruction", o.reconstruction, o.beta}, std::tuple{"contrastive", o.contrastive, 1 - o.beta},
          std::tuple{"topological", o.topological, o.alpha}, std::tuple{"regularizer", o.regularizer, o.gamma}}) {
      if (name == "none" || weight == 0) continue;
      if (name == "composite") throw BadInput(fmt::format("{}=composite: expected a loss other than composite", option));
      auto& term = terms_[name];
      if (!term) term = Losses().Find(name).make();  // BadInput listing the registered losses
      const torch::Tensor value = weight * term->Compute(in);
      total = total.defined() ? total + value : value;
    }
    if (!total.defined()) throw BadInput("loss composite: every term is none or weighted 0 (expected at least one)");
    return total;
  }

 private:
  std::map<std::string, std::unique_ptr<Loss>> terms_;
};

}  // namespace

TB_REGISTER_LOSS(latent_consistency, LatentConsistency, "Latent consistency", "the merging report, 4.5.16");
TB_REGISTER_LOSS(contrastive, Contrastive, "Contrastive (NT-Xent) on the neck",
                 "Chen et al. 2020; Schürholt et al. 2021; the merging report's recommended loss");
TB_REGISTER_LOSS(composite, Composite, "The report's recommended composite",
                 "the merging report: β L_MSE + (1 − β) L_c + α L_Topological + R");

}  // namespace tb
