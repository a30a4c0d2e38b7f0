// Character-level language modelling with the sequence families (ModelSpec.vocab > 0): the
// next-symbol loss, bits per character, and deterministic training on windows of a corpus.
//
//   tb::ModelSpec spec{"lstm", "relu", "default", corpus.vocab(), corpus.vocab()};
//   auto model = tb::MakeModel(spec);
//   tb::LmTrainOptions o;                                  // 600 steps of 32 windows of 32
//   tb::TrainLanguageModel(*model, corpus.train, o, /*seed=*/1, &log, "zoo/source/");
//   double bpc = tb::BitsPerChar(*model, tb::EvaluationWindows(corpus.test, 32, 16384));
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "experiments/models/model.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

// Bump when the language-model trainer changes the weights it produces (part of the zoo key).
constexpr int kLmTrainerVersion = 1;

struct LmTrainOptions {
  int64_t steps = 600;
  int64_t seq_len = 32;
  int64_t batch_size = 32;
  double lr = 2e-3;
  // steps, batch_size and lr under `prefix` (seq_len is bound by whoever shares it).
  void Bind(Options& o, const std::string& prefix);
  nlohmann::json ToJson() const;
};

// The mean next-symbol cross entropy (nats) of logits [N, T, V] against the ids [N, T].
torch::Tensor NextSymbolLoss(const torch::Tensor& logits, const torch::Tensor& targets);
// Bits per character of a language model on windows [W, L + 1] (inputs the first L ids, targets
// the last L): the mean next-symbol cross entropy over every predicted symbol / ln 2. In eval
// mode, without gradients, in batches of `batch` windows.
double BitsPerChar(Classifier& model, const torch::Tensor& windows, int64_t batch = 256);

// The training windows of step `step`: opts.batch_size windows of seq_len + 1 ids, drawn from
// `ids` by a portable generator seeded from (seed, step).
torch::Tensor TrainingWindows(const torch::Tensor& ids, const LmTrainOptions& opts, uint64_t seed, int64_t step);

// Trains in place for opts.steps Adam steps; logs <prefix>loss every 50 steps and at the last.
// Returns the mean loss of the last 50 steps (nats).
double TrainLanguageModel(Classifier& model, const torch::Tensor& train_ids, const LmTrainOptions& opts, uint64_t seed,
                          RunLogger* log, const std::string& prefix);

}  // namespace tb
