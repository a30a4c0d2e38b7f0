#include "experiments/models/functional.h"

#include <cmath>
#include <map>
#include <mutex>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "store/errors.h"

namespace tb {
namespace {

struct Layout {
  std::vector<std::string> keys;  // "conv1.weight", "conv1.bias", ...
  std::vector<std::vector<int64_t>> shapes;
  int64_t count = 0;
};

// Puts torch's CPU generator back as it was: reading a layout must not move anyone's seeded stream.
class CpuGeneratorRestorer {
 public:
  CpuGeneratorRestorer() : generator_(at::globalContext().defaultGenerator(c10::DeviceType::CPU)) {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    state_ = generator_.get_state();
  }
  ~CpuGeneratorRestorer() {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(state_);
  }

 private:
  at::Generator generator_;
  torch::Tensor state_;
};

const Layout& GetLayout(const ModelSpec& spec) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, int64_t>, Layout> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(spec.arch, spec.num_classes);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ModelSpec plain = spec;  // shapes depend on the architecture and class count only
  plain.activation = "relu";
  plain.init = "default";
  Layout layout;
  {
    CpuGeneratorRestorer restore;
    torch::NoGradGuard no_grad;
    const ModelPtr model = MakeModel(plain);
    for (const auto& item : model->named_parameters()) {
      layout.keys.push_back(item.key());
      layout.shapes.push_back(item.value().sizes().vec());
      layout.count += item.value().numel();
    }
  }
  return cache.emplace(key, std::move(layout)).first->second;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// x [B, N, in], weight [B, out, in], bias [B, out] -> [B, N, out]. One network: torch::linear,
// the nn layer's own call, so that the result is bit-for-bit the model's.
torch::Tensor BatchedLinear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (weight.size(0) == 1) return torch::linear(x.squeeze(0), weight.squeeze(0), bias.squeeze(0)).unsqueeze(0);
  return torch::baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2));
}

// The B networks of f [B, P] at once: the conv part as one grouped convolution, channels
// [N, B·C, H, W] with network b's channels b·C ... (b + 1)·C − 1; the linear part as [B, N, width].
// x: shared images, or each network's own (`own`, [B, N, ...]). `single`: one network (B = 1),
// the results without the batch dimension, through the nn layers' own calls.
FunctionalPass RunTogether(const Layout& layout, const ModelSpec& spec, const torch::Tensor& f, const torch::Tensor& x,
                           bool own, int64_t n, bool single) {
  static const std::vector<int64_t> kOnes = {1, 1}, kZeros = {0, 0};
  const int64_t b = f.size(0);
  FunctionalPass pass;
  torch::Tensor conv_h, linear_h;
  if (layout.shapes.front().size() == 4) {
    conv_h = own ? x.reshape({b, n, 28, 28}).transpose(0, 1) : x.reshape({n, 1, 28, 28});
    if (!own && b > 1) conv_h = conv_h.repeat({1, b, 1, 1});
  } else {
    linear_h = own ? x.reshape({b, n, 784}) : x.reshape({n, 784}).unsqueeze(0).expand({b, n, 784});
  }
  int64_t offset = 0;
  for (size_t i = 0; i + 1 < layout.keys.size(); i += 2) {
    const auto& w_shape = layout.shapes[i];
    const auto& b_shape = layout.shapes[i + 1];
    std::vector<int64_t> batched = {b};
    batched.insert(batched.end(), w_shape.begin(), w_shape.end());
    const torch::Tensor weight = f.slice(1, offset, offset + Numel(w_shape)).reshape(batched);
    offset += Numel(w_shape);
    const torch::Tensor bias = f.slice(1, offset, offset + Numel(b_shape));
    offset += Numel(b_shape);
    const std::string name = layout.keys[i].substr(0, layout.keys[i].find('.'));
    if (name == "head") {
      if (!linear_h.defined()) linear_h = conv_h.reshape({n, b, -1}).transpose(0, 1);
      pass.logits = BatchedLinear(linear_h, weight, bias);
      if (single) pass.logits = pass.logits.squeeze(0);
      break;
    }
    torch::Tensor pre;
    if (w_shape.size() == 4) {
      const int64_t out = w_shape[0];
      pre = torch::conv2d(conv_h, weight.reshape({b * out, w_shape[1], w_shape[2], w_shape[3]}), bias.reshape({b * out}),
                          /*stride=*/kOnes, /*padding=*/kZeros, /*dilation=*/kOnes, /*groups=*/b);
      // cnn2464: Conv MaxPool2 act, Conv MaxPool2 act, Conv act.
      if (name == "conv1" || name == "conv2") pre = torch::max_pool2d(pre, 2);
      conv_h = Activate(spec.activation, pre);
      const auto per_network = [&](const torch::Tensor& t) {
        return single ? t : t.reshape({n, b, out, t.size(2), t.size(3)}).transpose(0, 1);
      };
      pass.pre.push_back(per_network(pre));
      pass.hidden.push_back(per_network(conv_h));
    } else {
      if (!linear_h.defined()) {
        // Flattened channel-major per network, as the nn model's reshape({N, -1}).
        linear_h = single ? conv_h.reshape({n, -1}).unsqueeze(0) : conv_h.reshape({n, b, -1}).transpose(0, 1);
      }
      pre = BatchedLinear(linear_h, weight, bias);
      linear_h = Activate(spec.activation, pre);
      pass.pre.push_back(single ? pre.squeeze(0) : pre);
      pass.hidden.push_back(single ? linear_h.squeeze(0) : linear_h);
    }
    pass.names.push_back(name);
    pass.weights.push_back(single ? weight.squeeze(0) : weight);
  }
  return pass;
}

// The B single runs' fields stacked along a new first dimension (the logits only: `logits_only`).
FunctionalPass Stacked(const std::vector<FunctionalPass>& runs, bool logits_only) {
  const auto stack = [&](std::vector<torch::Tensor> FunctionalPass::*field, size_t l) {
    std::vector<torch::Tensor> parts;
    for (const auto& run : runs) parts.push_back((run.*field)[l]);
    return torch::stack(parts);
  };
  FunctionalPass pass;
  pass.names = runs.front().names;
  for (size_t l = 0; !logits_only && l < pass.names.size(); ++l) {
    pass.pre.push_back(stack(&FunctionalPass::pre, l));
    pass.hidden.push_back(stack(&FunctionalPass::hidden, l));
    pass.weights.push_back(stack(&FunctionalPass::weights, l));
  }
  std::vector<torch::Tensor> logits;
  for (const auto& run : runs) logits.push_back(run.logits);
  pass.logits = torch::stack(logits);
  return pass;
}

// FunctionalForward; with `logits_only` the batched path stacks nothing but the logits.
FunctionalPass Forward(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& images, bool logits_only) {
  const Layout& layout = GetLayout(spec);
  if (!flat.defined() || (flat.dim() != 1 && flat.dim() != 2)) {
    throw BadInput(fmt::format("functional {}: flat parameters of {} dimensions: expected [P] or [B, P]", spec.arch,
                               flat.defined() ? flat.dim() : 0));
  }
  const bool single = flat.dim() == 1;
  const torch::Tensor f = single ? flat.unsqueeze(0) : flat;
  const int64_t b = f.size(0);
  if (f.size(1) != layout.count) {
    throw BadInput(fmt::format("functional {}: flat has {} values: expected {} (the model's parameter count)", spec.arch,
                               f.size(1), layout.count));
  }
  if (layout.shapes.front().size() == 4 && spec.arch != "cnn2464") {
    throw BadInput(fmt::format("functional {}: no functional form for this architecture (cnn2464 and the MLPs have one)",
                               spec.arch));
  }
  // Network b's images: shared [N, ...], or its own [B, N, 1, 28, 28].
  const bool own = images.defined() && images.dim() == 5;
  const int64_t n = !images.defined() || images.dim() == 0 ? 0 : own ? images.size(1) : images.size(0);
  if (n < 1 || images.numel() != (own ? b : 1) * n * 784 || (own && (single || images.size(0) != b))) {
    throw BadInput(fmt::format("functional {}: images of shape [{}]: expected [N, 1, 28, 28], or [B={}, N, 1, 28, 28] with "
                               "B weight vectors",
                               spec.arch, images.defined() ? fmt::format("{}", fmt::join(images.sizes(), ", ")) : "",
                               b));
  }
  const torch::Tensor x = images.to(f.device(), f.scalar_type());
  if (single) return RunTogether(layout, spec, f, x, /*own=*/false, n, /*single=*/true);
  // One image per network (the per-sample trick): all at once. Otherwise one network at a time:
  // on CPU, B plain convolutions of N images beat one grouped convolution, and its double
  // backward, several times over (bench/functional_losses_bench.cpp).
  if (own && n == 1) return RunTogether(layout, spec, f, x, /*own=*/true, n, /*single=*/false);
  std::vector<FunctionalPass> runs;
  for (int64_t i = 0; i < b; ++i) {
    runs.push_back(RunTogether(layout, spec, f.slice(0, i, i + 1), own ? x[i] : x, /*own=*/false, n, /*single=*/true));
  }
  return Stacked(runs, logits_only);
}

}  // namespace

const std::vector<std::vector<int64_t>>& ParameterShapes(const ModelSpec& spec) { return GetLayout(spec).shapes; }
int64_t ParameterCount(const ModelSpec& spec) { return GetLayout(spec).count; }

FunctionalPass FunctionalForward(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& images) {
  return Forward(spec, flat, images, /*logits_only=*/false);
}

torch::Tensor FunctionalLogits(const ModelSpec& spec, const torch::Tensor& flat, const torch::Tensor& images) {
  return Forward(spec, flat, images, /*logits_only=*/true).logits;
}

std::vector<torch::Tensor> FunctionalHidden(const ModelSpec& spec, const torch::Tensor& flat,
                                            const torch::Tensor& images) {
  return FunctionalForward(spec, flat, images).hidden;
}

torch::Tensor ActivationDerivative(const std::string& activation, const torch::Tensor& a) {
  if (activation == "relu") return (a > 0).to(a.scalar_type());
  if (activation == "leakyrelu") return torch::where(a > 0, torch::ones_like(a), torch::full_like(a, 0.01));
  if (activation == "sigmoid") {
    const auto s = torch::sigmoid(a);
    return s * (1 - s);
  }
  if (activation == "tanh") return 1 - torch::tanh(a).square();
  if (activation == "silu") {
    const auto s = torch::sigmoid(a);
    return s * (1 + a * (1 - s));
  }
  if (activation == "gelu") {  // torch::gelu is the exact x Φ(x): Φ(x) + x φ(x)
    const double pi = 3.14159265358979323846;
    const double inv_sqrt2 = 1.0 / std::sqrt(2.0), inv_sqrt2pi = 1.0 / std::sqrt(2.0 * pi);
    return 0.5 * (1 + torch::erf(a * inv_sqrt2)) + a * inv_sqrt2pi * torch::exp(-0.5 * a.square());
  }
  Activate(activation, a);  // BadInput naming the accepted activations
  throw BadInput(fmt::format("activation '{}': no derivative", activation));
}

}  // namespace tb
