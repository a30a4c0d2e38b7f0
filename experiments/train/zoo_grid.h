// Zoo grids: the weight-merging report's zoo of class-subset models, described by a file
// (experiments/zoos/<name>.json), built resumably, listed and exported.
//
//   {"name": "quick", "dataset": "mnist", "arch": "cnn2464",
//    "subsets": {"sizes": [2, 10], "limit": 4},        // or an explicit list: [[0, 1], [2, 3]]
//    "activations": ["relu"], "inits": ["kaiming_uniform"], "seeds": [0],
//    "checkpoints": [11, 16, 21, 26, 31, 36],
//    "train": {"lr": 0.001, "batch_size": 64, "val_fraction": 0.1, "early_stopping": true},
//    "data.train_per_class": 0}
//
// One training unit per (subset, activation, init, seed), trained up to the last checkpoint with
// the report's early stopping; the weights at each checkpoint epoch are kept, and a model that
// stops early is filed under the closest earlier checkpoint bin (its true epoch kept; under the
// first bin when it stops before it). The initial weights depend on the init and the seed only
// ("the report fixes the initial seed"): models sharing an init start identical whatever their
// classes and activation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/data/dataset.h"
#include "experiments/train/trainer.h"
#include "store/run_store.h"

namespace tb {

struct ZooGrid {
  std::string name, path;
  std::string dataset = "mnist";
  std::string data_dir;
  int64_t train_per_class = 0;
  std::string arch = "cnn2464";
  std::vector<std::vector<int64_t>> subsets;  // expanded, in order: by size, then lexicographic
  std::vector<std::string> activations, inits;
  std::vector<int64_t> seeds{0};
  std::vector<int64_t> checkpoints{11, 16, 21, 26, 31, 36};
  TrainOptions train;  // epochs: the last checkpoint

  int64_t Units() const {
    return static_cast<int64_t>(subsets.size() * activations.size() * inits.size() * seeds.size());
  }
};

struct ZooUnit {
  std::vector<int64_t> classes;
  std::string activation, init;
  int64_t seed = 0;
};

// Loads experiments/zoos/<name>.json, or the file at `name_or_path`; BadInput (one line naming
// the value) for a missing file, an unknown key, activation, init, architecture or dataset, a
// bad subset or checkpoint list.
ZooGrid LoadZooGrid(const std::string& name_or_path);
// The directory of the grid files.
std::string ZoosDir();

ZooUnit UnitAt(const ZooGrid& grid, int64_t index);

// The units' key (everything that determines their weights, the thread count and BLAS included).
nlohmann::json UnitSpec(const ZooGrid& grid, const ZooUnit& unit, const Dataset& ds, const std::string& device,
                        int64_t threads, const std::string& blas);

// Builds the units with index % stride == offset that are not done yet, in this process.
// Returns the number trained.
int64_t BuildZooShard(const ZooGrid& grid, const std::string& results_dir, int64_t offset, int64_t stride,
                      const std::string& device_name, const std::string& blas);
// Units of the grid done in this results directory under its current settings (any device,
// thread count or BLAS; a unit built twice counts once). The running build's progress line
// counts the grid's unit records in SQL instead (RunStore::CountGridUnits), which is cheaper.
int64_t ZooUnitsDone(RunStore& store, const ZooGrid& grid);

// The settings every model of the grid is trained with (dataset, data.dir, training options,
// checkpoints, trainer version): what a run taking models from the grid depends on.
nlohmann::json GridModelKey(const ZooGrid& grid);

// The grid's checkpoints under its current settings: records of an edited grid file's older
// settings are left out, and of a unit built more than once (another thread count or device),
// the first build's only.
std::vector<ModelRecord> GridCheckpoints(RunStore& store, const ZooGrid& grid);

// The model of (classes, activation, init, seed) at epoch bin `bin`: the unit's checkpoint at the
// latest bin <= `bin` (a unit that stopped early has no later ones: its weights at `bin` are
// those it stopped with), trained on the data of `dataset_sha256`; nullopt when not built.
// `classes` sorted.
// `checkpoints`: GridCheckpoints(store, grid), read once for the several models a run takes.
std::optional<ModelRecord> FindGridCheckpoint(const std::vector<ModelRecord>& checkpoints, const std::string& dataset_sha256,
                                              const std::vector<int64_t>& classes, const std::string& activation,
                                              const std::string& init, int64_t seed, int64_t bin);

// The rows of `zoo ls`: counts and mean accuracies by activation × init × checkpoint bin.
std::string ZooListing(RunStore& store, const ZooGrid& grid);

// Exports the grid's checkpoints: CSV in the report's layout (one-hot classes, one-hot
// activation, one-hot init, the weights w0…, accuracy, epoch bin, true epoch), with
// <out>.index.json mapping weight columns to layers and shapes; or a tensor file (pt). Returns
// the rows written. BadInput when nothing of the grid is built.
int64_t ExportZoo(RunStore& store, const ZooGrid& grid, const std::string& format, const std::string& out);

// Reads an exported CSV back: the weights [rows, parameters] (float32) and the bins.
std::pair<torch::Tensor, std::vector<int64_t>> ImportZooCsv(const std::string& path);

}  // namespace tb
