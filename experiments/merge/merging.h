// Weight-space merging of models of one architecture: the math the merge methods share, as
// functions of named weights (mergekit's habit: one generalised routine per family, methods
// are its settings). No data loading, no logging.
//
//   tb::Weights w1 = tb::GetWeights(*p1), w2 = tb::GetWeights(*p2), base = tb::GetWeights(*init);
//   tb::Weights avg = tb::TaskVectorMerge({}, {w1, w2}, {"mean", 1.0, 1.0});      // weight_average
//   tb::Weights ta = tb::TaskVectorMerge(base, {w1, w2}, {"sum", 0.7, 1.0});      // task arithmetic
//   tb::Weights ties = tb::TaskVectorMerge(base, {w1, w2}, {"ties", 1.0, 0.2});   // TIES
//   tb::Permutations p = tb::WeightMatching(*p1, *p2, /*seed=*/1);               // Git Re-Basin
//   tb::ModelPtr aligned = tb::Permuted(*p2, p);                                 // same function as p2
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "experiments/models/model.h"

namespace tb {

// Named parameters in the model's order, detached copies.
using Weights = std::vector<std::pair<std::string, torch::Tensor>>;

Weights GetWeights(Classifier& model);
// Copies `weights` into the model's parameters (names and shapes must match).
void SetWeights(Classifier& model, const Weights& weights);
// A new model of `spec` (on `device`) holding `weights`.
ModelPtr FromWeights(const ModelSpec& spec, const Weights& weights, torch::Device device);

struct TaskVectorOptions {
  // mean: base + λ·mean(τ_i) (without a base: the plain mean of the parents, λ ignored);
  // sum: base + λ·Σ τ_i (task arithmetic); ties: base + λ·disjoint mean of the trimmed,
  // sign-elected τ_i (TIES-Merging).
  std::string combine = "mean";
  double lambda = 1.0;
  double density = 1.0;  // ties: share of each task vector's entries kept (largest magnitudes)
};

// The task-vector family, τ_i = W_i − base. Throws BadInput for an unknown combine.
Weights TaskVectorMerge(const Weights& base, const std::vector<Weights>& parents, const TaskVectorOptions& options);

// Σ F_i W_i / Σ F_i entry by entry; entries where every F_i is below `floor` get the plain mean.
Weights FisherMerge(const std::vector<Weights>& parents, const std::vector<Weights>& fishers, double floor = 1e-10);

// Diagonal empirical Fisher of `model` on `images`/`labels`: the mean over samples of the
// squared gradient of the log-likelihood of the true label, one sample at a time.
Weights DiagonalFisher(Classifier& model, const torch::Tensor& images, const torch::Tensor& labels);

// One layer (conv or linear) of a chain model, with the inputs it sees.
struct LayerInput {
  std::string name;     // "conv1", "fc1", "head", ...
  torch::Tensor input;  // [N, C, H, W] for a conv layer, [N, in] for a linear one
};
// The inputs of every weight layer on `images`, input side first (the head's last).
std::vector<LayerInput> LayerInputs(Classifier& model, const torch::Tensor& images);

// Gram matrix of a layer's inputs with a constant 1 appended (so the bias is merged with the
// weights): [in + 1, in + 1] for a linear layer; over unfolded patches for a conv layer.
torch::Tensor InputGram(const torch::Tensor& weight, const torch::Tensor& input);

// RegMean (Jin et al. 2023): per layer W* = (Σ G̃_i)⁻¹ Σ G̃_i W_i, G̃ = α G + (1 − α) diag(G),
// with [W | b] solved together. `grams[i]` holds parent i's Gram matrix per layer name.
Weights RegMeanMerge(const std::vector<Weights>& parents,
                     const std::vector<std::vector<std::pair<std::string, torch::Tensor>>>& grams, double alpha);

// One permutation of hidden units per hidden layer (index a of model 1 ↔ unit perm[a] of model 2).
using Permutations = std::vector<std::vector<int64_t>>;

// Weight matching (Ainsworth et al., Git Re-Basin): per hidden layer a linear assignment that
// maximises Σ ⟨W1, P W2⟩ over the weights touching that layer's units, layers visited in a
// seeded random order until no permutation changes (at most `max_rounds`). The assignment is
// dlib's max_cost_assignment.
Permutations WeightMatching(Classifier& model1, Classifier& model2, uint64_t seed, int max_rounds = 100);
// Model 2 with its hidden units permuted: the same function, units in model 1's order.
ModelPtr Permuted(Classifier& model, const Permutations& perms);

// Linear interpolation (1 − t)·W1 + t·W2.
Weights Interpolate(const Weights& w1, const Weights& w2, double t);

// Per-layer statistics of the weights and the random-matrix check: the eigenvalues of XᵀX/n
// (X the centred weight matrix as n × p, n ≥ p; conv kernels flattened per output channel)
// against the Marchenko-Pastur bounds σ²(1 ± √(p/n))². Keys: weights/<layer>/{mean,std,kurtosis},
// mp/<layer>/{outside,share_outside}, mp/share_outside over every layer.
std::map<std::string, double> WeightDiagnostics(Classifier& model);
// The Marchenko-Pastur check of one matrix: {eigenvalues outside the bounds, eigenvalues}.
std::pair<int64_t, int64_t> MarchenkoPasturOutside(const torch::Tensor& matrix);

}  // namespace tb
