// Deterministic training of a classifier on a class subset: Adam, fixed batch order from a
// portable permutation per epoch, optional early stopping. The step function is apart from
// the loop, so a later trainer can drive many small models in one pass.
//
//   tb::TrainOptions opts;                        // epochs 5, lr 1e-3, batch 64
//   tb::TrainResult r = tb::Train(*model, fit, val, opts, /*seed=*/1, &logger, "a/");
//   r.val_acc.back();
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/models/model.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

// Bump when a change to the trainer changes the weights it produces: it is part of every
// zoo hash, so models trained by older code are not reused.
constexpr int kTrainerVersion = 1;

struct TrainOptions {
  int64_t epochs = 5;
  double lr = 1e-3;
  int64_t batch_size = 64;
  // Stop once validation accuracy has stayed within 0.05 points (max - min over the last
  // three epochs), as the weight-merging report does.
  bool early_stopping = false;
  double val_fraction = 0.1;

  void Bind(Options& o, const std::string& prefix);
  nlohmann::json ToJson() const;
};

struct TrainResult {
  std::vector<double> loss;       // mean training loss per epoch
  std::vector<double> train_acc;  // training accuracy per epoch (on the fly)
  std::vector<double> val_acc;    // validation accuracy after each epoch
  int64_t epochs_run = 0;
  double seconds = 0;
};

// One Adam step on one batch; returns {loss, number of correct predictions}.
std::pair<double, int64_t> TrainStep(Classifier& model, torch::optim::Optimizer& optimizer,
                                     const torch::Tensor& images, const torch::Tensor& labels);

// Trains in place. Logs <prefix>loss, <prefix>train_acc, <prefix>val_acc per epoch (step =
// epoch) when `log` is given.
TrainResult Train(Classifier& model, const Split& fit, const Split& val, const TrainOptions& options,
                  uint64_t seed, RunLogger* log, const std::string& prefix);

// Called after every epoch (numbered from 1, after its validation) with whether training stops
// after it (early stopping or the last epoch): a zoo saves its checkpoints from it.
using EpochCallback = std::function<void(int64_t epoch, bool last, const TrainResult& so_far)>;
TrainResult Train(Classifier& model, const Split& fit, const Split& val, const TrainOptions& options,
                  uint64_t seed, RunLogger* log, const std::string& prefix, const EpochCallback& on_epoch);

// The device named by "auto" (CUDA if available, else CPU), "cpu" or "cuda".
torch::Device ResolveDevice(const std::string& name);

}  // namespace tb
