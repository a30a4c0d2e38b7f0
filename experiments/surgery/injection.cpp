#include "experiments/surgery/injection.h"

#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "experiments/surgery/linear_algebra.h"
#include "store/errors.h"

namespace tb {

torch::Tensor FeaturesOf(Classifier& model, const torch::Tensor& images, torch::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < images.size(0); i += 2048) {
    parts.push_back(model.Features(images.slice(0, i, std::min(i + 2048, images.size(0))).to(device)));
  }
  model.train(was_training);
  return torch::cat(parts);
}

void ApplyHead(const std::string& head, Classifier& a, Classifier& b, const ScenarioData& data, torch::Device device,
               double ridge, bool shared_only, MetricMap& diagnostics, const std::string& prefix) {
  if (head == "keep") return;
  torch::NoGradGuard no_grad;
  if (head == "copy_row") {
    if (a.FeatureWidth() != b.FeatureWidth()) {
      throw BadInput(fmt::format("head=copy_row: target {} has {} penultimate features and source {} has {} "
                                 "(use head=stitch_row)",
                                 a.spec().arch, a.FeatureWidth(), b.spec().arch, b.FeatureWidth()));
    }
    for (int64_t t : data.classes.transfer) {
      a.head->weight[t].copy_(b.head->weight[t]);
      a.head->bias[t].copy_(b.head->bias[t]);
    }
    return;
  }
  if (head != "stitch_row") {
    throw BadInput(fmt::format("head={}: expected keep, copy_row or stitch_row", head));
  }
  Split fit = data.b_train;
  if (shared_only) {
    std::vector<int64_t> shared;
    for (int64_t c : data.classes.a) {
      if (std::find(data.classes.b.begin(), data.classes.b.end(), c) != data.classes.b.end()) shared.push_back(c);
    }
    fit = SelectClasses(fit, shared);
  }
  auto fa = FeaturesOf(a, fit.images, device);
  auto fb = FeaturesOf(b, fit.images, device);
  Stitch s = FitStitch(fa, fb, ridge);
  const double err = (fa.mm(s.weight) + s.bias - fb).norm().item<double>() / std::max(1e-12, fb.norm().item<double>());
  diagnostics[prefix + "stitch_error"] = err;
  for (int64_t t : data.classes.transfer) {
    auto [row, bias] = StitchHeadRow(s, b.head->weight[t], b.head->bias[t]);
    a.head->weight[t].copy_(row);
    a.head->bias[t].copy_(bias);
  }
}

InjectedClassifier::InjectedClassifier(ModelPtr base, SparseAutoencoder sae, torch::Tensor concept, torch::Tensor anchor,
                                       InjectionSpec spec)
    : Classifier(base->spec()), base_(std::move(base)), sae_(std::move(sae)), spec_(spec) {
  register_module("base", base_);
  register_module("sae", sae_);
  head = base_->head;
  const auto device = concept.device();
  concept_ = register_parameter("concept", concept.detach().clone(), spec_.learn_concept);
  anchor_ = register_buffer("anchor", anchor.detach().clone());
  gamma_ = register_parameter("gamma", torch::ones({}, torch::TensorOptions().device(device)));
  rho_raw_ = register_parameter("rho_raw", torch::full({}, 2.0, torch::TensorOptions().device(device)),
                                spec_.blend);  // sigmoid(2) = 0.88 of the injected features
  const int64_t c = sae_->concepts();
  detector_ = register_module("detector",
                              torch::nn::Sequential(torch::nn::Linear(c, spec_.detector_hidden), torch::nn::ReLU(),
                                                    torch::nn::Linear(spec_.detector_hidden, 1)));
  detector_->to(device);
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  for (auto& p : sae_->parameters()) p.set_requires_grad(false);
}

torch::Tensor InjectedClassifier::Gate(const torch::Tensor& codes) {
  if (!spec_.gated) return torch::ones({codes.size(0)}, codes.options());
  auto spatial = torch::exp(-(codes - anchor_).pow(2).sum(1) / (2 * spec_.sigma * spec_.sigma));
  auto learned = torch::sigmoid(detector_->forward(codes).squeeze(1));
  return spec_.beta * spatial + (1 - spec_.beta) * learned;
}

torch::Tensor InjectedClassifier::Features(const torch::Tensor& images) {
  auto f = base_->Features(images);
  auto z = sae_->Encode(f);
  auto injected = sae_->Decode(z + gamma_ * Gate(z).unsqueeze(1) * concept_);
  if (!spec_.blend) return injected;
  auto rho = torch::sigmoid(rho_raw_);
  return rho * injected + (1 - rho) * f;
}

std::vector<torch::Tensor> InjectedClassifier::HiddenActivations(const torch::Tensor& images) {
  auto acts = base_->HiddenActivations(images);
  acts.back() = Features(images);
  return acts;
}

std::vector<torch::Tensor> InjectedClassifier::Trainable() {
  std::vector<torch::Tensor> out = {gamma_};
  if (spec_.learn_concept) out.push_back(concept_);
  if (spec_.blend) out.push_back(rho_raw_);
  if (spec_.gated) {
    for (auto& p : detector_->parameters()) out.push_back(p);
  }
  return out;
}

double TrainInjection(InjectedClassifier& model, Classifier& original, MethodContext& ctx, const InjectionLoss& w,
                      const InjectionTraining& t, const std::string& prefix) {
  const Split& transfer = ctx.data.transfer_train;
  const Split& preserve = ctx.data.a_train;
  if (transfer.size() == 0 || preserve.size() == 0) throw BadInput("injection: needs class-4 and S_A training samples");
  const int64_t cls = ctx.data.classes.transfer.front();
  auto xt = transfer.images.to(ctx.device);
  auto xp = preserve.images.to(ctx.device);
  auto yp = preserve.labels.to(ctx.device);
  torch::Tensor original_logits;
  {
    torch::NoGradGuard no_grad;
    original.eval();
    original_logits = original.forward(xp.slice(0, 0, std::min<int64_t>(xp.size(0), 4096)));
  }
  const int64_t np = std::min<int64_t>(xp.size(0), 4096);
  torch::optim::Adam opt(model.Trainable(), torch::optim::AdamOptions(t.lr));
  model.train();
  double last = 0;
  for (int64_t step = 0; step < t.steps; ++step) {
    auto it = torch::tensor(PortablePermutation(xt.size(0), ctx.seed * 104729ULL + static_cast<uint64_t>(step)), torch::kInt64)
                  .slice(0, 0, std::min(t.transfer_batch, xt.size(0)))
                  .to(ctx.device);
    auto ip = torch::tensor(PortablePermutation(np, ctx.seed * 130363ULL + static_cast<uint64_t>(step)), torch::kInt64)
                  .slice(0, 0, std::min(t.preserve_batch, np))
                  .to(ctx.device);
    opt.zero_grad();
    auto lt = model.forward(xt.index_select(0, it));
    auto target = torch::full({lt.size(0)}, cls, torch::TensorOptions().dtype(torch::kInt64).device(ctx.device));
    torch::Tensor loss = w.transfer * torch::nn::functional::cross_entropy(lt, target);
    if (w.confidence > 0) {
      auto p = torch::softmax(lt, 1);
      loss = loss + w.confidence * (-(p * torch::log(p + 1e-12)).sum(1).mean());
    }
    if (w.mse > 0 || w.ce > 0) {
      auto lp = model.forward(xp.index_select(0, ip));
      if (w.mse > 0) loss = loss + w.mse * torch::mse_loss(lp, original_logits.index_select(0, ip));
      if (w.ce > 0) loss = loss + w.ce * torch::nn::functional::cross_entropy(lp, yp.index_select(0, ip));
    }
    loss.backward();
    opt.step();
    last = loss.item<double>();
    ctx.log.Scalar(prefix + "loss", last, step + 1);
  }
  model.eval();
  return last;
}

}  // namespace tb
