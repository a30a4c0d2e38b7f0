// The registered models as pure functions of a flat parameter vector: the same forward pass as
// MakeModel(spec)->forward, its parameters read from `flat` in MakeModel(spec)->parameters()
// order (zoo export's order), so that logits and hidden activations are differentiable w.r.t.
// the vector itself. The functional losses (Jacobian, Fisher, contractive) run the networks a
// merger predicts this way.
//
//   tb::ModelSpec spec{"cnn2464", "tanh"};
//   torch::Tensor flat = torch::randn({36, 2464}, torch::requires_grad());  // 36 networks
//   torch::Tensor logits = tb::FunctionalLogits(spec, flat, images);       // [36, N, 10]
//   logits.sum().backward();                                               // flat.grad()
//
// Shapes. `flat` [P] is one network: images [N, 1, 28, 28] (or [N, 784]) give logits [N, C],
// bit-for-bit the nn model's forward (the same LibTorch calls). `flat` [B, P] is B networks:
// images [N, 1, 28, 28] are shared, images [B, N, 1, 28, 28] give network b its own batch (the
// Jacobian uses that); logits are [B, N, C], bit-for-bit B single runs, stacked. With one image
// per network, [B, 1, 1, 28, 28] (per-sample gradients: the Fisher), the B networks run at once
// as grouped convolutions and batched matrix products, equal to single runs up to float rounding.
// Images are cast to flat's dtype and device. BadInput when flat's length is not the model's
// parameter count, or for an architecture with no functional form (cnn2464 and the MLPs have one).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/models/model.h"

namespace tb {

// One forward pass: the hidden layers (input side first, as Classifier::HiddenActivations and
// HiddenLayerNames give them), each layer's pre-activation (the input of tb::Activate: after max
// pooling where the layer pools) and the logits. Every tensor has flat's batch layout.
struct FunctionalPass {
  std::vector<std::string> names;         // "conv1", ..., "fc1" or "fc1", "fc2", ...
  std::vector<torch::Tensor> pre, hidden;  // [(B,) N, C, H, W] for a conv layer, [(B,) N, width] for a linear one
  std::vector<torch::Tensor> weights;      // each hidden layer's weight, [(B,) out, in, ...], a view of flat
  torch::Tensor logits;                    // [(B,) N, C]
};
FunctionalPass FunctionalForward(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& images);

torch::Tensor FunctionalLogits(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& images);
std::vector<torch::Tensor> FunctionalHidden(const ModelSpec& spec, const torch::Tensor& flat,
                                            const torch::Tensor& images);

// The model's parameter shapes in parameters() order, and their total. Made once per
// architecture and class count, with torch's CPU generator left as it was.
const std::vector<std::vector<int64_t>>& ParameterShapes(const ModelSpec& spec);
int64_t ParameterCount(const ModelSpec& spec);

// Derivative of tb::Activate(activation, ·) at the pre-activation `a`, elementwise and
// differentiable (relu: the 0/1 step, 0 at 0 as autograd takes it; leakyrelu: 1 or 0.01).
torch::Tensor ActivationDerivative(const std::string& activation, const torch::Tensor& a);

}  // namespace tb
