#include "experiments/models/model.h"

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>

#include <ATen/CPUGeneratorImpl.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/models/sequence.h"
#include "store/errors.h"

namespace tb {
namespace {

const std::map<std::string, std::vector<int64_t>>& MlpWidths() {
  // Hidden widths; the input is 784 and the head maps the last width to the classes.
  static const std::map<std::string, std::vector<int64_t>> widths = {
      {"mega", {512, 256, 128, 64}},
      {"wide", {512, 128}},
      {"deep", {256, 256, 128}},
      {"superwide", {2048}},
      {"verydeep", {64, 64, 64, 64, 64, 64}},
  };
  return widths;
}

void CheckName(const std::string& what, const std::string& name, const std::vector<std::string>& known) {
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    throw BadInput(fmt::format("{} '{}': unknown (expected one of {})", what, name, fmt::join(known, ", ")));
  }
}

void Initialise(torch::nn::Module& module, const std::string& init) {
  if (init == "default") return;
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    auto& p = item.value();
    const bool is_bias = item.key().size() >= 4 && item.key().compare(item.key().size() - 4, 4, "bias") == 0;
    if (is_bias) {
      p.zero_();
    } else if (init == "xavier_uniform") {
      torch::nn::init::xavier_uniform_(p);
    } else if (init == "xavier_normal") {
      torch::nn::init::xavier_normal_(p);
    } else if (init == "uniform") {
      torch::nn::init::uniform_(p, -0.1, 0.1);
    } else if (init == "normal") {
      torch::nn::init::normal_(p, 0.0, 0.1);
    } else if (init == "kaiming_normal") {
      torch::nn::init::kaiming_normal_(p);
    } else if (init == "kaiming_uniform") {
      torch::nn::init::kaiming_uniform_(p);
    }
  }
}

class Mlp : public Classifier {
 public:
  Mlp(ModelSpec spec, const std::vector<int64_t>& widths) : Classifier(std::move(spec)) {
    int64_t in = 784;
    for (size_t i = 0; i < widths.size(); ++i) {
      names_.push_back(fmt::format("fc{}", i + 1));
      layers_.push_back(register_module(names_.back(), torch::nn::Linear(in, widths[i])));
      in = widths[i];
    }
    head = register_module("head", torch::nn::Linear(in, spec_.num_classes));
  }
  torch::Tensor Features(const torch::Tensor& images) override {
    torch::Tensor h = images.reshape({images.size(0), -1});
    for (auto& l : layers_) h = Activate(spec_.activation, l->forward(h));
    return h;
  }
  std::vector<torch::Tensor> HiddenActivations(const torch::Tensor& images) override {
    std::vector<torch::Tensor> out;
    torch::Tensor h = images.reshape({images.size(0), -1});
    for (auto& l : layers_) out.push_back(h = Activate(spec_.activation, l->forward(h)));
    return out;
  }
  std::vector<std::string> HiddenLayerNames() const override { return names_; }

 private:
  std::vector<std::string> names_;
  std::vector<torch::nn::Linear> layers_;
};

// Conv(1->8, k5) MaxPool2 act, Conv(8->6, k5) MaxPool2 act, Conv(6->4, k2) act,
// Linear(36->20) act, Linear(20->10): 2,464 parameters on 28x28 input.
class Cnn2464 : public Classifier {
 public:
  explicit Cnn2464(ModelSpec spec) : Classifier(std::move(spec)) {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, /*kernel=*/5)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 6, /*kernel=*/5)));
    conv3 = register_module("conv3", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 4, /*kernel=*/2)));
    fc1 = register_module("fc1", torch::nn::Linear(36, 20));
    head = register_module("head", torch::nn::Linear(20, spec_.num_classes));
  }
  torch::Tensor Features(const torch::Tensor& images) override { return HiddenActivations(images).back(); }
  std::vector<torch::Tensor> HiddenActivations(const torch::Tensor& images) override {
    const auto& a = spec_.activation;
    auto x = images.reshape({images.size(0), 1, 28, 28});
    auto h1 = Activate(a, torch::max_pool2d(conv1->forward(x), 2));
    auto h2 = Activate(a, torch::max_pool2d(conv2->forward(h1), 2));
    auto h3 = Activate(a, conv3->forward(h2));
    auto h4 = Activate(a, fc1->forward(h3.reshape({h3.size(0), -1})));
    return {h1, h2, h3, h4};
  }
  std::vector<std::string> HiddenLayerNames() const override { return {"conv1", "conv2", "conv3", "fc1"}; }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::Linear fc1{nullptr};
};

}  // namespace

GeneratorStateGuard::GeneratorStateGuard() : generator_(at::detail::getDefaultCPUGenerator()) {
  std::lock_guard<std::mutex> lock(generator_.mutex());
  state_ = generator_.get_state();
}

GeneratorStateGuard::~GeneratorStateGuard() {
  std::lock_guard<std::mutex> lock(generator_.mutex());
  generator_.set_state(state_);
}

std::vector<std::string> ImageModelNames() {
  std::vector<std::string> names = {"cnn2464"};
  for (const auto& [name, widths] : MlpWidths()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> ModelNames() {
  std::vector<std::string> names = ImageModelNames();
  for (const auto& name : SequenceFamilies()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> ActivationNames() { return {"gelu", "leakyrelu", "relu", "sigmoid", "silu", "tanh"}; }

std::vector<std::string> InitNames() {
  return {"default", "kaiming_normal", "kaiming_uniform", "normal", "uniform", "xavier_normal", "xavier_uniform"};
}

torch::Tensor Activate(const std::string& activation, const torch::Tensor& x) {
  if (activation == "relu") return torch::relu(x);
  if (activation == "gelu") return torch::gelu(x);
  if (activation == "silu") return torch::silu(x);
  if (activation == "leakyrelu") return torch::leaky_relu(x, 0.01);
  if (activation == "sigmoid") return torch::sigmoid(x);
  if (activation == "tanh") return torch::tanh(x);
  CheckName("activation", activation, ActivationNames());
  return x;
}

ModelPtr MakeModel(const ModelSpec& spec) {
  if (!IsSequenceArch(spec.arch)) CheckName("architecture", spec.arch, ModelNames());
  CheckName("activation", spec.activation, ActivationNames());
  CheckName("init", spec.init, InitNames());
  if (spec.num_classes < 2) throw BadInput(fmt::format("num_classes {}: expected at least 2", spec.num_classes));
  if (spec.vocab != 0 && !IsSequenceArch(spec.arch)) {
    throw BadInput(fmt::format("architecture {}: not a sequence model, so not a language model (expected one of {})",
                               spec.arch, fmt::join(SequenceFamilies(), ", ")));
  }
  if (spec.vocab < 0 || (spec.vocab > 0 && spec.vocab != spec.num_classes)) {
    throw BadInput(fmt::format("vocab {}: expected 0 or a vocabulary of at least 2 symbols, equal to num_classes ({})",
                               spec.vocab, spec.num_classes));
  }
  ModelPtr model;
  if (IsSequenceArch(spec.arch)) {
    return MakeSequenceModel(spec);  // initialised as each family's reference implementation does
  } else if (spec.arch == "cnn2464") {
    model = std::make_shared<Cnn2464>(spec);
  } else {
    model = std::make_shared<Mlp>(spec, MlpWidths().at(spec.arch));
  }
  Initialise(*model, spec.init);
  return model;
}

ModelPtr CloneModel(const ModelPtr& model) {
  ModelPtr copy = MakeModel(model->spec());
  copy->to(model->parameters().front().device());
  torch::NoGradGuard no_grad;
  auto src = model->named_parameters();
  for (auto& item : copy->named_parameters()) item.value().copy_(*src.find(item.key()));
  auto src_buffers = model->named_buffers();
  for (auto& item : copy->named_buffers()) item.value().copy_(*src_buffers.find(item.key()));
  return copy;
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace tb
