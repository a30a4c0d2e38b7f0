// The transfer metrics of the glossary (README), as pure functions of predictions.
// Accuracies are top-1 over the full 10-way output, as fractions in [0, 1];
// `degradation` is in percentage points.
//
//   auto before = tb::Predict(*a, test.images);       // int64 [N]
//   auto after = tb::Predict(*a_prime, test.images);
//   tb::MetricMap m = tb::TransferMetrics(before, after, test.labels, scenario_classes);
//   m["transfer_rate"], m["preservation"], m["acc_class_4"], ...
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/models/model.h"

namespace tb {

using MetricMap = std::map<std::string, double>;

struct ScenarioClasses {
  std::vector<int64_t> a;         // S_A: the target's classes
  std::vector<int64_t> b;         // S_B: the source's classes
  std::vector<int64_t> transfer;  // T: in S_B, not in S_A
};

// Logits of `model` on the CPU, computed in batches, in eval mode and without gradients.
torch::Tensor Logits(Classifier& model, const torch::Tensor& images, int64_t batch_size = 2048);

// Argmax predictions of `model` (Logits(...).argmax(1)).
torch::Tensor Predict(Classifier& model, const torch::Tensor& images, int64_t batch_size = 2048);

// Fraction of samples whose label is in `classes` predicted correctly (NaN if none).
double Accuracy(const torch::Tensor& predictions, const torch::Tensor& labels,
                const std::vector<int64_t>& classes);

// transfer_rate: fraction of T samples that A' predicts as their true class.
// acc_before / acc_after: accuracy of A / A' on S_A. preservation: acc_after / acc_before.
// degradation: 100 (acc_before - acc_after), in points. false_transfer: fraction of S_A
// samples that A' predicts as a class in T. joint_acc: accuracy of A' on S_A ∪ T.
// acc_class_<k>: accuracy of A' on class k, for every k in S_A ∪ S_B.
MetricMap TransferMetrics(const torch::Tensor& predictions_before, const torch::Tensor& predictions_after,
                          const torch::Tensor& labels, const ScenarioClasses& classes);

}  // namespace tb
