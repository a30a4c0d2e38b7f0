// Shared machinery of the feature-space surgery methods (concept injection, vector-space and
// cross-architecture alignment): the target's features, the `head` option, and a classifier
// that injects a concept into the target's sparse-autoencoder space, gated by class-4
// detectors and blended with the original features.
//
//   auto injected = std::make_shared<tb::InjectedClassifier>(a, sae, concept, spec);
//   tb::TrainInjection(*injected, ctx, weights, steps, lr, batches);
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "experiments/protocols/surgery.h"
#include "experiments/surgery/sae.h"

namespace tb {

// Penultimate features of `model` on `images`, in eval mode, without gradients, batched.
torch::Tensor FeaturesOf(Classifier& model, const torch::Tensor& images, torch::Device device);

// The `head` option: keep (A's rows as trained), copy_row (B's transfer rows and biases; equal
// widths only), stitch_row (B's rows carried into A's feature space through the least-squares
// linear stitch fitted on B's training images, ridge `ridge`). Edits `a`'s head in place and
// records diagnostics (e.g. the stitch's relative error).
void ApplyHead(const std::string& head, Classifier& a, Classifier& b, const ScenarioData& data,
               torch::Device device, double ridge, bool shared_only, MetricMap& diagnostics,
               const std::string& prefix);

struct InjectionSpec {
  bool gated = false;         // scale the injection by the class-4 detectors
  double beta = 0.4;          // gate = beta * spatial + (1 - beta) * learned
  double sigma = 5.0;         // width of the spatial (Gaussian) detector in concept space
  int64_t detector_hidden = 16;
  bool learn_concept = false; // the concept vector itself is trained (concept_injection)
  bool blend = false;         // learnable blend rho between injected and original features
};

class InjectedClassifier : public Classifier {
 public:
  // `concept` and `anchor` live in `sae`'s concept space; `anchor` is the class-4 centroid the
  // spatial detector measures distance to (ignored unless gated).
  InjectedClassifier(ModelPtr base, SparseAutoencoder sae, torch::Tensor concept, torch::Tensor anchor,
                     InjectionSpec spec);
  torch::Tensor Features(const torch::Tensor& images) override;
  std::vector<torch::Tensor> HiddenActivations(const torch::Tensor& images) override;
  std::vector<std::string> HiddenLayerNames() const override { return base_->HiddenLayerNames(); }
  torch::Tensor Gate(const torch::Tensor& codes);
  // The parameters the injection trains (never the base model's or the SAE's).
  std::vector<torch::Tensor> Trainable();
  double gamma() { return gamma_.item<double>(); }
  double rho() { return torch::sigmoid(rho_raw_).item<double>(); }

 private:
  ModelPtr base_;
  SparseAutoencoder sae_;
  InjectionSpec spec_;
  torch::Tensor concept_, anchor_, gamma_, rho_raw_;
  torch::nn::Sequential detector_{nullptr};
};

struct InjectionLoss {
  double transfer = 1.0;     // cross-entropy of class-4 samples to their label
  double mse = 0.0;          // MSE of A''s logits to A's on S_A samples
  double ce = 0.0;           // cross-entropy of S_A samples to their labels
  double confidence = 0.0;   // entropy of A''s predictions on class-4 samples
};

struct InjectionTraining {
  int64_t steps = 50;
  double lr = 0.01;
  int64_t transfer_batch = 32;
  int64_t preserve_batch = 16;
};

// Trains the injection's parameters; logs <prefix>loss per step. Returns the final loss.
double TrainInjection(InjectedClassifier& model, Classifier& original, MethodContext& ctx, const InjectionLoss& loss,
                      const InjectionTraining& training, const std::string& prefix);

}  // namespace tb
