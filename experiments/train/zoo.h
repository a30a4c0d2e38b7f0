// The model zoo: trained models cached by a hash of everything that determines their
// weights, saved under <results>/zoo/<hash>.pt and indexed in the store's models table.
// A second request for the same model loads it instead of training.
//
//   tb::Zoo zoo(results_dir, store);
//   tb::ZooRequest req{...};
//   tb::ZooEntry e = zoo.Get(req, &logger, "a/");   // e.model, e.trained (false if cached)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/data/dataset.h"
#include "experiments/models/model.h"
#include "experiments/train/trainer.h"
#include "store/logger.h"
#include "store/run_store.h"

namespace tb {

struct ZooRequest {
  const Dataset* dataset = nullptr;
  ModelSpec model;
  std::vector<int64_t> classes;
  uint64_t seed = 0;
  // The seed of the initial weights when they must not follow `seed` (models that share an
  // initial checkpoint, as the merging report's zoo does); -1: `seed` seeds both.
  int64_t init_seed = -1;
  TrainOptions train;
  int64_t train_per_class = 0;  // 0: every training sample of the classes
  torch::Device device = torch::kCPU;
  int64_t threads = 1;  // intra-op threads: the order of float sums, so the weights, follow them
  std::string blas;     // the BLAS library and kernel (e.g. "openblas 0.3.21 Haswell"), likewise

  // Everything that determines the weights, the trainer's version included.
  nlohmann::json Spec() const;
  std::string Hash() const;
};

struct ZooEntry {
  ModelPtr model;
  std::string hash;
  bool trained = false;  // false: loaded from the zoo
  nlohmann::json metrics;
};

// The training and validation data a zoo model of these classes is trained on.
std::pair<Split, Split> ZooTrainingData(const Dataset& dataset, const std::vector<int64_t>& classes,
                                        int64_t train_per_class, double val_fraction, uint64_t seed);

class Zoo {
 public:
  Zoo(std::string dir, RunStore& store) : dir_(std::move(dir)), store_(store) {}
  ZooEntry Get(const ZooRequest& request, RunLogger* log, const std::string& prefix);
  // The general form (the language models' zoo): a model of `model`, made with torch seeded by
  // `init_seed`, on `device`, trained by `train` (which returns its metrics and sets the seconds
  // it took) unless `spec` (everything that determines its weights) is in the zoo.
  ZooEntry GetOrTrain(const nlohmann::json& spec, const ModelSpec& model, uint64_t init_seed, torch::Device device,
                      const std::function<nlohmann::json(Classifier& model, double& seconds)>& train);
  std::string PathFor(const std::string& hash) const;

 private:
  std::string dir_;
  RunStore& store_;
};

void SaveModel(Classifier& model, const std::string& path);
void LoadModel(Classifier& model, const std::string& path);

}  // namespace tb
