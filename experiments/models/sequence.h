// Sequence-model families: recurrent and state-space classifiers that read an image as 28 steps
// of 28 features (AsSequence), each an input embedding, one sequence layer (or two, xlstm) and
// the linear head of every Classifier. Every parameter has a role, so that a weight mapping
// between families addresses roles (gates to gates, recurrent to recurrent, time constants to
// time constants), not positions.
//
//   tb::ModelPtr m = tb::MakeModel({"lstm96"});          // family lstm, width 96
//   auto* s = dynamic_cast<tb::SequenceClassifier*>(m.get());
//   for (const auto& [name, role] : s->Roles()) ...       // "forget_gate.U", "recurrent"
//
// Architecture names: a family, optionally followed by its width (lstm = lstm64). Families:
//   lstm       embed → LSTM cell (input, forget, candidate, output gates; c_t = f c + i g,
//              h_t = o tanh c) → last h.
//   xlstm      embed → sLSTM (exponential input and forget gates, normaliser n and stabiliser m:
//              m_t = max(f̃ + m_{t-1}, ĩ), i' = exp(ĩ - m_t), f' = exp(f̃ + m_{t-1} - m_t),
//              c = f'c + i'z, n = f'n + i', h = o c / (n + 1e-6)) → mLSTM (matrix memory
//              C = f'C + i' v kᵀ, n = f'n + i'k, h = o (C q) / max(|nᵀq|, exp(-m)), its forget
//              gate log-sigmoid as the reference implementation's: log f = logsigmoid(f̃), bias
//              3 at init, so f ≈ 0.95) over the sLSTM's outputs; features: the sum of both
//              layers' last h (a residual).
//   cfc        embed → closed-form continuous-time cell (Hasani et al. 2022, CfC eq. 10 without a
//              backbone, as ncps's CfCCell): ff1 = tanh(·), ff2 = tanh(·), t_a, t_b linear in
//              [x; h]; σ = sigmoid(t_a Δt + t_b) with Δt = softplus(time_constant) per unit
//              (1 at init); h_t = ff1 (1 - σ) + σ ff2: liquid time constants, t_a the rate.
//   ssm        embed → selective diagonal state space (Mamba's S6, no convolution): Δ_t =
//              softplus(W_dt x_t + b_dt) per channel, A = -exp(A_log) [E, N], B_t = W_B x_t,
//              C_t = W_C x_t; h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, y_t = C_t h_t + D x_t,
//              gated by silu(W_z x_t + b_z).
//   liquid_s4  embed → diagonal S4 (S4D-Real: A = -exp(A_log), Δ = exp(log_dt) per channel, ZOH
//              B̄ = (exp(ΔA) - 1)/A · B) with the liquid term of Hasani et al. 2022 in its
//              simplest, recurrent form (order 2: the input-dependent transition of an LTC):
//              h_t = (Ā + B̄ x_t) h_{t-1} + B̄ x_t, y_t = C h_t + D x_t, gated by silu(W_z x_t + b_z).
// State size N = 8 for both state-space families. The activation and init of ModelSpec are not
// used by these families (each initialises as its reference implementation does).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "experiments/models/model.h"

namespace tb {

// The roles a parameter of a sequence model plays.
// input_gate, forget_gate, output_gate, candidate, recurrent, memory (mLSTM's q/k/v),
// time_constants, state (an SSM's B, C, D), embedding, head.
const std::vector<std::string>& ParameterRoleNames();

class SequenceClassifier : public Classifier {
 public:
  torch::Tensor Features(const torch::Tensor& images) override { return HiddenActivations(images).back(); }
  // Each layer's output at the last step. The input: images [N, 1, 28, 28] (or a sequence
  // [N, T, 28]); for a language model (spec().vocab > 0) symbol ids [N, T].
  std::vector<torch::Tensor> HiddenActivations(const torch::Tensor& images) override;
  // The last layer's output at every step, [N, T, width], for the same inputs.
  torch::Tensor StepFeatures(const torch::Tensor& inputs);
  // The head at every step, [N, T, num_classes]: a language model's next-symbol logits.
  torch::Tensor StepLogits(const torch::Tensor& inputs) { return head->forward(StepFeatures(inputs)); }
  std::vector<std::string> HiddenLayerNames() const override { return layer_names_; }
  // Every parameter (by its named_parameters() name) with its role.
  virtual std::vector<std::pair<std::string, std::string>> Roles() const = 0;
  const std::string& family() const { return family_; }
  int64_t width() const { return width_; }

  // The input embedding: 28 features → width, or, for a language model, vocab → width (a
  // lookup of the symbol's column plus the bias: the one-hot product without the zeros).
  torch::nn::Linear embed{nullptr};

 protected:
  SequenceClassifier(ModelSpec spec, std::string family, int64_t width);
  // The sequence layers over the embedded sequence [N, T, width]: each layer's output at every
  // step [N, T, width], input side first (the last one's last step is Features()).
  virtual std::vector<torch::Tensor> Layers(const torch::Tensor& x) = 0;

 private:
  torch::Tensor Embed(const torch::Tensor& inputs);

 protected:

  std::string family_;
  int64_t width_;
  std::vector<std::string> layer_names_;
};

// The families, sorted.
std::vector<std::string> SequenceFamilies();
// Whether `arch` names a sequence model (a family with an optional width).
bool IsSequenceArch(const std::string& arch);
// {family, width} of a sequence architecture name; BadInput for a width outside 1..4096.
std::pair<std::string, int64_t> ParseSequenceArch(const std::string& arch);
// A freshly initialised sequence model (the caller seeds torch).
ModelPtr MakeSequenceModel(const ModelSpec& spec);

// Bump when a change to a family changes what it computes or how it initialises: part of the
// zoo key of every sequence model and of the bootstrap reference curves.
constexpr int kSequenceModelVersion = 2;

// The state size of the state-space families.
constexpr int64_t kStateSize = 8;

}  // namespace tb
