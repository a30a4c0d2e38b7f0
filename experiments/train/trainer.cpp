#include "experiments/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "experiments/metrics/transfer.h"
#include "store/errors.h"

namespace tb {

void TrainOptions::Bind(Options& o, const std::string& prefix) {
  o.Add(prefix + "epochs", &epochs, "training epochs (upper bound with early stopping)");
  o.Add(prefix + "lr", &lr, "Adam learning rate");
  o.Add(prefix + "batch_size", &batch_size, "minibatch size");
  o.Add(prefix + "early_stopping", &early_stopping,
        "stop when validation accuracy stays within 0.05 points for 3 epochs");
  o.Add(prefix + "val_fraction", &val_fraction, "share of each class's training data held out for validation");
}

nlohmann::json TrainOptions::ToJson() const {
  return {{"epochs", epochs}, {"lr", lr}, {"batch_size", batch_size}, {"early_stopping", early_stopping},
          {"val_fraction", val_fraction}, {"optimizer", "adam"}};
}

std::pair<double, int64_t> TrainStep(Classifier& model, torch::optim::Optimizer& optimizer,
                                     const torch::Tensor& images, const torch::Tensor& labels) {
  optimizer.zero_grad();
  auto logits = model.forward(images);
  auto loss = torch::nn::functional::cross_entropy(logits, labels);
  loss.backward();
  optimizer.step();
  const int64_t correct = logits.argmax(1).eq(labels).sum().item<int64_t>();
  return {loss.item<double>(), correct};
}

TrainResult Train(Classifier& model, const Split& fit, const Split& val, const TrainOptions& options,
                  uint64_t seed, RunLogger* log, const std::string& prefix) {
  return Train(model, fit, val, options, seed, log, prefix, EpochCallback());
}

TrainResult Train(Classifier& model, const Split& fit, const Split& val, const TrainOptions& options,
                  uint64_t seed, RunLogger* log, const std::string& prefix, const EpochCallback& on_epoch) {
  if (options.epochs < 0) throw BadInput(fmt::format("epochs={}: expected >= 0", options.epochs));
  if (options.batch_size < 1) throw BadInput(fmt::format("batch_size={}: expected >= 1", options.batch_size));
  if (!(options.lr > 0)) throw BadInput(fmt::format("lr={}: expected > 0", options.lr));
  if (fit.size() == 0) throw BadInput("training set is empty (check the classes and data.train_per_class)");
  const auto start = std::chrono::steady_clock::now();
  const auto device = model.parameters().front().device();
  auto images = fit.images.to(device);
  auto labels = fit.labels.to(device);
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(options.lr));
  TrainResult result;
  const int64_t n = fit.size();
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    model.train();
    const auto order = PortablePermutation(n, seed * 1000003ULL + static_cast<uint64_t>(epoch));
    const auto perm = torch::tensor(order, torch::kInt64).to(device);
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i += options.batch_size) {
      auto idx = perm.slice(0, i, std::min(i + options.batch_size, n));
      auto [loss, hits] = TrainStep(model, optimizer, images.index_select(0, idx), labels.index_select(0, idx));
      loss_sum += loss * static_cast<double>(idx.size(0));
      correct += hits;
    }
    result.loss.push_back(loss_sum / static_cast<double>(n));
    result.train_acc.push_back(static_cast<double>(correct) / static_cast<double>(n));
    double val_acc = std::nan("");
    if (val.size() > 0) {
      val_acc = static_cast<double>(Predict(model, val.images).eq(val.labels).sum().item<int64_t>()) /
                static_cast<double>(val.size());
    }
    result.val_acc.push_back(val_acc);
    result.epochs_run = epoch + 1;
    if (log) {
      log->Scalar(prefix + "loss", result.loss.back(), epoch + 1);
      log->Scalar(prefix + "train_acc", result.train_acc.back(), epoch + 1);
      log->Scalar(prefix + "val_acc", val_acc, epoch + 1);
    }
    bool stop = false;
    if (options.early_stopping && result.val_acc.size() >= 3) {
      auto last = result.val_acc.end() - 3;
      auto [lo, hi] = std::minmax_element(last, result.val_acc.end());
      stop = *hi - *lo <= 0.0005;
    }
    if (on_epoch) {
      model.eval();
      on_epoch(epoch + 1, stop || epoch + 1 == options.epochs, result);
    }
    if (stop) break;
  }
  model.eval();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

torch::Device ResolveDevice(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) throw BadInput("device=cuda: no CUDA device is available (use auto or cpu)");
    return torch::kCUDA;
  }
  if (name == "auto") return torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;
  throw BadInput(fmt::format("device={}: expected auto, cpu or cuda", name));
}

}  // namespace tb
