// The weight-task merging report's closing hypothesis (section 5.6, "Kolmogorov Arnold Networks"):
// fine-tuning closes the gap between a predicted CNN and a good one within one or two hundred
// steps, so the map W_predicted → W_finetuned may be simple enough for a Kolmogorov-Arnold network
// (Liu et al. 2024, "KAN: Kolmogorov-Arnold Networks"; the layer follows pykan's KANLayer: a SiLU
// base plus a learnable B-spline on every edge). Here: the learned merger's predictions P of a
// sample of its training triples, each fine-tuned for a few Adam steps on its union's training
// images into F; one small net per CNN layer maps a standardised neuron token of P (its incoming
// weights and bias) to the standardised residual F − P of that token; the refined model is
// P + residual. A plain MLP with the same parameter count is the control. Both are cached like
// the merger (results/zoo/refine-pairs-<hash>.pt, shared, and refiner-<hash>.pt with a model
// record). The `kan_refine` and `mlp_refine` merge methods are its front ends.
//
//   tb::Kan kan({26, 4, 26}, tb::SplineGrid{});            // [B, 26] → [B, 26]
//   tb::TrainedRefiner r = tb::GetRefiner(merger_request, merger, triples, options, store, &log);
//   torch::Tensor refined = r.Refine(p);                    // [B, P] → [B, P]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "experiments/merge/merger.h"
#include "store/logger.h"
#include "store/options.h"
#include "store/run_store.h"

namespace tb {

// Bump when a change makes the pairs or the refiner come out different (part of both keys).
constexpr int kRefinerVersion = 1;

// The B-splines of a KAN edge: order k on a uniform grid of `intervals` intervals over
// [-range, range], extended by k knots on each side, so intervals + k basis functions that sum to
// 1 inside [-range, range] (outside the extended grid every basis function is 0 and only the
// edge's SiLU base remains).
struct SplineGrid {
  int64_t intervals = 5;  // pykan's G
  int64_t order = 3;      // pykan's k
  double range = 2.0;
  int64_t Bases() const { return intervals + order; }
};

// The basis functions at x, by the Cox–de Boor recursion in torch ops (differentiable in x):
// x [...] → [..., intervals + order].
torch::Tensor BSplineBasis(const torch::Tensor& x, const SplineGrid& grid);

// One KAN layer: y_j = Σ_i w_base[j,i]·silu(x_i) + w_spline[j,i]·Σ_m c[j,i,m]·B_m(x_i).
// Init (pykan's): w_base ~ U(-1, 1)/√in, w_spline = 1/√in, c ~ U(-0.25/G, 0.25/G) (the amplitude
// of pykan's noise_scale 0.5 fitted on the grid), so every edge starts near a scaled SiLU.
class KanLayerImpl : public torch::nn::Module {
 public:
  KanLayerImpl(int64_t in, int64_t out, const SplineGrid& grid);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in] → [B, out]

  torch::Tensor base_weight;    // [out, in]
  torch::Tensor spline_weight;  // [out, in]
  torch::Tensor coefficients;   // [out, in, bases]

 private:
  SplineGrid grid_;
};
TORCH_MODULE(KanLayer);

// A stack of KAN layers of widths [in, hidden..., out].
class KanImpl : public torch::nn::Module {
 public:
  KanImpl(const std::vector<int64_t>& widths, const SplineGrid& grid);
  torch::Tensor forward(torch::Tensor x);

 private:
  std::vector<KanLayer> layers_;
};
TORCH_MODULE(Kan);

// The control: Linear(in, hidden) − SiLU − Linear(hidden, out), LibTorch's default init.
class RefineMlpImpl : public torch::nn::Module {
 public:
  RefineMlpImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear first_{nullptr}, second_{nullptr};
};
TORCH_MODULE(RefineMlp);

// Parameter counts: a KAN of `widths` (in·out·(2 + bases) per layer) and the control MLP; the
// control's hidden width whose count is the closest to `target` (the smaller on a tie).
int64_t KanParameterCount(const std::vector<int64_t>& widths, const SplineGrid& grid);
int64_t MlpParameterCount(int64_t in, int64_t hidden, int64_t out);
int64_t MatchedMlpHidden(int64_t in, int64_t out, int64_t target);

// The refine.* options.
struct RefinerOptions {
  int64_t pairs = 48;          // training triples whose prediction is fine-tuned (a seeded sample)
  int64_t steps = 100;         // Adam steps of each fine-tuning (the report's "one or two hundred")
  double finetune_lr = 1e-3;   // their learning rate (batch 64, as the protocol's fine-tuning)
  double val = 0.2;            // share of the pairs that validates the refiner
  int64_t hidden = 4;          // the KAN's hidden width: [d, hidden, d] per layer
  int64_t grid = 5;            // spline intervals G
  int64_t order = 3;           // spline order k
  double range = 2.0;          // the spline grid spans [-range, range] (standardised units)
  double lr = 1e-2;            // Adam on the refiner, full batch over each layer's tokens
  int64_t epochs = 300;        // full-batch steps; the one of lowest validation loss is kept

  void Bind(Options& o, const std::string& prefix);
  void Check(const std::string& prefix) const;  // BadInput naming the value and the range
  SplineGrid Spline() const { return SplineGrid{grid, order, range}; }
};

// The (P, F) pairs: predictions of the merger and their fine-tuned versions [N, P] (CPU float).
// The last `val_count` pairs validate.
struct RefinePairs {
  torch::Tensor predicted, finetuned;
  int64_t val_count = 0;
  std::string hash;
  bool computed = false;  // false: loaded from the cache
};

// Loads the cached pairs of this merger and these options, or makes them (fine-tuning on the
// device of `request`) and caches them under results/zoo/refine-pairs-<hash>.pt.
RefinePairs GetRefinePairs(const MergerRequest& request, const TrainedMerger& merger, const ZooTriples& triples,
                           const RefinerOptions& options, RunLogger* log);

// One net per layer of the CNN (the merger's "neuron" tokenisation), with the per-layer
// standardisation of its inputs (P's tokens) and targets (F − P) over the training pairs.
class WeightRefinerImpl : public torch::nn::Module {
 public:
  WeightRefinerImpl(const std::string& net, const ModelSpec& spec, const RefinerOptions& options);
  // The standardised residual prediction of layer l's tokens [B·count_l, d_l].
  torch::Tensor LayerForward(size_t layer, const torch::Tensor& tokens);
  // P + the predicted residual, [B, P] → [B, P].
  torch::Tensor forward(const torch::Tensor& predicted);

  const std::vector<torch::Tensor>& groups() const { return groups_; }  // token indices [count_l, d_l]
  int64_t mlp_hidden(size_t layer) const { return mlp_hidden_[layer]; }
  // Per layer: mean and std of the inputs, mean and std of the residuals [L] each.
  torch::Tensor in_mean, in_std, res_mean, res_std;

 private:
  std::vector<torch::Tensor> groups_;
  std::vector<int64_t> mlp_hidden_;
  std::vector<torch::nn::AnyModule> nets_;
};
TORCH_MODULE(WeightRefiner);

struct TrainedRefiner {
  std::shared_ptr<WeightRefinerImpl> model;
  std::string hash, pairs_hash;
  bool trained = false;        // false: loaded from the cache
  bool pairs_computed = false;  // whether this call fine-tuned the pairs
  nlohmann::json metrics;       // val_mse, val_mse_none, val_mse_mean, move_mse, parameters, pairs, best_epoch, ...
  // The refined weights (eval, no gradients), on the refiner's device.
  torch::Tensor Refine(const torch::Tensor& predicted) const;
};

// Loads the cached refiner (`net` = kan or mlp) of this merger and these options, or makes the
// pairs (GetRefinePairs) and trains it, logging refine/train_loss and refine/val_loss per epoch,
// and caches it under results/zoo/refiner-<hash>.pt with a model record.
TrainedRefiner GetRefiner(const std::string& net, const MergerRequest& request, const TrainedMerger& merger,
                          const ZooTriples& triples, const RefinerOptions& options, RunStore& store, RunLogger* log);

}  // namespace tb
