// Losses: named, differentiable functions over a model's outputs (and, for later families,
// weights or features), with declared options, registered with TB_REGISTER_LOSS. Methods that
// train anything (distillation, merging, ...) look them up by name.
//
//   auto loss = tb::Losses().Find("kd").make();
//   loss->options().SetText("temperature", "4");
//   torch::Tensor l = loss->Compute({student_logits, teacher_logits, labels});
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/models/model.h"
#include "store/options.h"
#include "store/registry.h"

namespace tb {

// What latent losses ask of the learned merger being trained (LossInputs.latent; null elsewhere).
class LatentAccess {
 public:
  virtual ~LatentAccess() = default;
  // The neck [B, k] of the batch's (W1, W2), with gradients.
  virtual torch::Tensor Neck() = 0;
  // The neck of the same batch with the hidden neurons of W1 and W2 permuted: a second view of
  // the same pairs (the hyper-representation papers' augmentation), with gradients.
  virtual torch::Tensor AugmentedNeck() = 0;
  // Encoder `k`'s (1 or 2) encoding of a weight batch [B, P], mean-pooled over tokens: [B, d].
  virtual torch::Tensor Encode(int k, const torch::Tensor& weights) = 0;
  // W1 (k = 1) or W2 (k = 2) of the batch [B, P].
  virtual torch::Tensor Input(int k) = 0;
};

// What a loss may look at; a loss documents which fields it needs and checks them.
struct LossInputs {
  torch::Tensor logits;          // [N, C] of the model being trained
  torch::Tensor teacher_logits;  // [N, C] of a reference model, if any
  torch::Tensor labels;          // [N] int64, if any
  // Weight-space losses (a merger's prediction against its target): weight vectors [B, P], or
  // one vector [P] (B = 1), and where P's layers start, ending with P (zoo export's index
  // order); empty: the whole vector is one layer.
  torch::Tensor predicted;
  torch::Tensor target;
  std::vector<int64_t> layer_bounds;
  // The network the weight vectors define, for losses that look at networks or neurons rather
  // than at the vectors (functional, per-neuron topological): one shape per layer of
  // layer_bounds (a weight [out, in, ...] or a bias [out]), the architecture and activation, and
  // a probe batch of images [N, 1, 28, 28] when a loss runs the networks. Filled by DescribeModel.
  std::vector<std::vector<int64_t>> layer_shapes;
  std::vector<std::string> layer_names;  // the parameters' names, one per shape ("conv1.weight")
  std::string arch, activation;
  torch::Tensor probe;
  LatentAccess* latent = nullptr;
};

// Sets `in`'s layer_bounds, layer_shapes, layer_names, arch and activation to those of the model `spec`
// makes, its parameters in zoo export's order (BadInput for an unknown spec).
void DescribeModel(LossInputs& in, const ModelSpec& spec);

// The weight-space inputs as [B, P] each, checked: BadInput naming `loss` when either is missing
// or their shapes differ, or the layer bounds do not partition P. Layer bounds defaulted to {0, P}.
struct WeightPair {
  torch::Tensor predicted, target;
  std::vector<int64_t> bounds;
};
WeightPair RequireWeights(const LossInputs& in, const std::string& loss);

// NT-Xent (SimCLR's normalised temperature-scaled cross-entropy) between two views [B, k] whose
// rows i are positives: the contrastive loss's core.
torch::Tensor NtXent(const torch::Tensor& a, const torch::Tensor& b, double temperature);

class Loss {
 public:
  virtual ~Loss() = default;
  virtual Options& options() = 0;
  virtual torch::Tensor Compute(const LossInputs& in) = 0;
  // A metric rather than a training loss (no gradient, e.g. the bottleneck distance): logged for
  // merged models, refused as a merger's training loss.
  virtual bool IsMetric() const { return false; }
};

template <class OptionsStruct>
class LossWithOptions : public Loss {
 public:
  LossWithOptions() { opts_.Bind(options_); }
  Options& options() override { return options_; }
  const OptionsStruct& opts() const { return opts_; }

 private:
  OptionsStruct opts_;
  Options options_;
};

struct LossInfo {
  std::string name;
  std::string display_name;
  std::string reference;
  std::function<std::unique_ptr<Loss>()> make;
};

using LossRegistry = Registry<LossInfo>;
// The registry of losses (constructed on first use).
LossRegistry& Losses();

#define TB_REGISTER_LOSS(name, Class, display, reference)                                 \
  static const bool tb_loss_registered_##name = ::tb::Losses().Register( \
      {#name, display, reference, [] { return std::unique_ptr<::tb::Loss>(new Class()); }})

}  // namespace tb
