#include "experiments/train/language_model.h"

#include <cmath>

#include <fmt/format.h>

#include "experiments/data/text.h"
#include "experiments/models/sequence.h"
#include "store/errors.h"

namespace tb {

void LmTrainOptions::Bind(Options& o, const std::string& prefix) {
  o.Add(prefix + "steps", &steps, "Adam steps of the language model");
  o.Add(prefix + "batch_size", &batch_size, "windows per step");
  o.Add(prefix + "lr", &lr, "Adam learning rate");
}

nlohmann::json LmTrainOptions::ToJson() const {
  return {{"steps", steps}, {"seq_len", seq_len}, {"batch_size", batch_size}, {"lr", lr}, {"optimizer", "adam"}};
}

torch::Tensor NextSymbolLoss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
}

namespace {
SequenceClassifier& AsLanguageModel(Classifier& model) {
  auto* s = dynamic_cast<SequenceClassifier*>(&model);
  if (!s || s->spec().vocab <= 0) {
    throw std::logic_error(fmt::format("{} is not a language model (a sequence family with ModelSpec.vocab > 0)",
                                       model.spec().arch));
  }
  return *s;
}
}  // namespace

double BitsPerChar(Classifier& model, const torch::Tensor& windows, int64_t batch) {
  SequenceClassifier& lm = AsLanguageModel(model);
  torch::NoGradGuard no_grad;
  const bool was_training = lm.is_training();
  lm.eval();
  const auto device = lm.parameters().front().device();
  double nats = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < windows.size(0); i += batch) {
    const auto w = windows.slice(0, i, std::min(i + batch, windows.size(0))).to(device);
    const auto x = w.slice(1, 0, w.size(1) - 1), y = w.slice(1, 1, w.size(1));
    const auto logits = lm.StepLogits(x);
    nats += torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}),
                                                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    count += y.numel();
  }
  if (was_training) lm.train();
  return count == 0 ? std::nan("") : nats / static_cast<double>(count) / std::log(2.0);
}

torch::Tensor TrainingWindows(const torch::Tensor& ids, const LmTrainOptions& opts, uint64_t seed, int64_t step) {
  return TextWindows(ids, opts.batch_size, opts.seq_len, seed * 1000003ULL + static_cast<uint64_t>(step));
}

double TrainLanguageModel(Classifier& model, const torch::Tensor& train_ids, const LmTrainOptions& opts, uint64_t seed,
                          RunLogger* log, const std::string& prefix) {
  SequenceClassifier& lm = AsLanguageModel(model);
  if (opts.steps < 0) throw BadInput(fmt::format("{}steps={}: expected >= 0", prefix, opts.steps));
  const auto device = lm.parameters().front().device();
  torch::optim::Adam optimizer(lm.parameters(), torch::optim::AdamOptions(opts.lr));
  lm.train();
  double window_sum = 0;
  int64_t window_count = 0;
  for (int64_t step = 0; step < opts.steps; ++step) {
    const auto w = TrainingWindows(train_ids, opts, seed, step).to(device);
    optimizer.zero_grad();
    auto loss = NextSymbolLoss(lm.StepLogits(w.slice(1, 0, w.size(1) - 1)), w.slice(1, 1, w.size(1)));
    loss.backward();
    optimizer.step();
    const double l = loss.item<double>();
    if (step >= opts.steps - 50) {
      window_sum += l;
      ++window_count;
    }
    if (log && ((step + 1) % 50 == 0 || step + 1 == opts.steps)) log->Scalar(prefix + "loss", l, step + 1);
  }
  lm.eval();
  return window_count == 0 ? std::nan("") : window_sum / static_cast<double>(window_count);
}

}  // namespace tb
