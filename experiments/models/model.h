// Model families and their registry. Every model is a classifier with a named penultimate
// feature layer and a linear head, so that methods can read features and edit head rows
// whatever the architecture.
//
//   tb::ModelSpec spec{"wide", "relu", "default"};
//   std::shared_ptr<tb::Classifier> m = tb::MakeModel(spec);    // seeded by torch::manual_seed
//   torch::Tensor logits = m->forward(images);                  // [N, 10]
//   torch::Tensor feats = m->Features(images);                  // [N, m->FeatureWidth()]
//
// Registered: cnn2464 (2,464 parameters, the weight-merging report's CNN) and the MLP family
// of the surgery report: mega 784-512-256-128-64-10, wide 784-512-128-10,
// deep 784-256-256-128-10, superwide 784-2048-10, verydeep 784-64x6-10; and the sequence
// families of experiments/models/sequence.h (lstm, xlstm, cfc, ssm, liquid_s4, each with an
// optional width: lstm96), which read an image as 28 steps of 28 features.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace tb {

struct ModelSpec {
  std::string arch = "wide";
  std::string activation = "relu";  // gelu, relu, silu, leakyrelu, sigmoid, tanh
  std::string init = "default";     // default (LibTorch's), xavier_uniform, xavier_normal,
                                    // uniform, normal, kaiming_normal, kaiming_uniform
  int64_t num_classes = 10;
  // > 0: a character-level language model over this many symbols (sequence families only):
  // its input is symbol ids [N, T] (int64), embedded by a lookup in `embed` (vocab → width), and
  // the head predicts the next symbol (num_classes is then the vocabulary too).
  int64_t vocab = 0;
};

class Classifier : public torch::nn::Module {
 public:
  // Penultimate features: everything but the head, activation applied.
  virtual torch::Tensor Features(const torch::Tensor& images) = 0;
  // Activations of every hidden layer, input side first; the last one is Features().
  virtual std::vector<torch::Tensor> HiddenActivations(const torch::Tensor& images) = 0;
  // The hidden layers' names, input side first ("fc1", "fc2", ... or "conv1", ...).
  virtual std::vector<std::string> HiddenLayerNames() const = 0;
  torch::Tensor forward(const torch::Tensor& images) { return head->forward(Features(images)); }
  int64_t FeatureWidth() const { return head->weight.size(1); }
  const ModelSpec& spec() const { return spec_; }

  torch::nn::Linear head{nullptr};

 protected:
  explicit Classifier(ModelSpec spec) : spec_(std::move(spec)) {}
  ModelSpec spec_;
};

using ModelPtr = std::shared_ptr<Classifier>;

// Keeps torch's default CPU generator as it was: its state is saved on construction and restored
// on destruction (for models made only to be looked at, which must not shift a run's draws).
class GeneratorStateGuard {
 public:
  GeneratorStateGuard();
  ~GeneratorStateGuard();
  GeneratorStateGuard(const GeneratorStateGuard&) = delete;
  GeneratorStateGuard& operator=(const GeneratorStateGuard&) = delete;

 private:
  at::Generator generator_;
  torch::Tensor state_;
};

// Sorted names of the registered architectures: the image models (MLPs and the CNN, which the
// zoo grids, surgery, merging and the losses' --arch take) and the sequence families.
std::vector<std::string> ModelNames();
std::vector<std::string> ImageModelNames();
std::vector<std::string> ActivationNames();
std::vector<std::string> InitNames();

// A freshly initialised model; the caller seeds torch beforehand. Throws BadInput for an
// unknown architecture, activation or init, listing the accepted names.
ModelPtr MakeModel(const ModelSpec& spec);

// A deep copy: a new model of the same spec with every parameter and buffer copied.
ModelPtr CloneModel(const ModelPtr& model);

int64_t CountParameters(const torch::nn::Module& module);

// Applies an activation by name.
torch::Tensor Activate(const std::string& activation, const torch::Tensor& x);

}  // namespace tb
