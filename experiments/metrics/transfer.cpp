#include "experiments/metrics/transfer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace tb {
namespace {

torch::Tensor InClasses(const torch::Tensor& values, const std::vector<int64_t>& classes) {
  auto mask = torch::zeros_like(values, torch::kBool);
  for (int64_t c : classes) mask |= values.eq(c);
  return mask;
}

double Fraction(const torch::Tensor& hits, const torch::Tensor& mask) {
  const int64_t n = mask.sum().item<int64_t>();
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(hits.logical_and(mask).sum().item<int64_t>()) / static_cast<double>(n);
}

}  // namespace

torch::Tensor Logits(Classifier& model, const torch::Tensor& images, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.parameters().front().device();
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < images.size(0); i += batch_size) {
    auto x = images.slice(0, i, std::min(i + batch_size, images.size(0))).to(device);
    parts.push_back(model.forward(x).to(torch::kCPU));
  }
  model.train(was_training);
  if (parts.empty()) return torch::empty({0, model.head->weight.size(0)});
  return torch::cat(parts);
}

torch::Tensor Predict(Classifier& model, const torch::Tensor& images, int64_t batch_size) {
  return Logits(model, images, batch_size).argmax(1);
}

double Accuracy(const torch::Tensor& predictions, const torch::Tensor& labels,
                const std::vector<int64_t>& classes) {
  return Fraction(predictions.eq(labels), InClasses(labels, classes));
}

MetricMap TransferMetrics(const torch::Tensor& predictions_before, const torch::Tensor& predictions_after,
                          const torch::Tensor& labels, const ScenarioClasses& classes) {
  auto before = predictions_before.to(torch::kCPU);
  auto after = predictions_after.to(torch::kCPU);
  auto y = labels.to(torch::kCPU);
  MetricMap m;
  const auto in_a = InClasses(y, classes.a);
  const auto in_t = InClasses(y, classes.transfer);
  m["transfer_rate"] = Fraction(after.eq(y), in_t);
  m["acc_before"] = Fraction(before.eq(y), in_a);
  m["acc_after"] = Fraction(after.eq(y), in_a);
  m["preservation"] = m["acc_before"] > 0 ? m["acc_after"] / m["acc_before"]
                                          : std::numeric_limits<double>::quiet_NaN();
  m["degradation"] = 100.0 * (m["acc_before"] - m["acc_after"]);
  m["false_transfer"] = Fraction(InClasses(after, classes.transfer), in_a);
  std::vector<int64_t> joint = classes.a;
  joint.insert(joint.end(), classes.transfer.begin(), classes.transfer.end());
  m["joint_acc"] = Fraction(after.eq(y), InClasses(y, joint));
  std::set<int64_t> all(classes.a.begin(), classes.a.end());
  all.insert(classes.b.begin(), classes.b.end());
  for (int64_t k : all) m[fmt::format("acc_class_{}", k)] = Fraction(after.eq(y), y.eq(k));
  return m;
}

}  // namespace tb
