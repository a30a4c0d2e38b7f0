// The learned merger of the weight-task merging report (section 4): a two-encoder TransformerAE
// that reads the flattened weights of W1 (trained on C1) and W2 (on C2) and predicts the weights
// of a model for C1 ∪ C2; trained on zoo triples (W1, W2 → W3 of one init, activation and epoch
// bin), split by the union class set so that test targets are never seen; cached like a zoo
// model. The `transformer_merge` and `zoo_mean` merge methods are its front ends.
//
//   tb::ZooTriples t = tb::LoadZooTriples(store, grid, sha, "relu", "kaiming_uniform", 0, 11, split);
//   tb::TrainedMerger m = tb::GetMerger(request, &log);     // trains, or loads the cached one
//   torch::Tensor w3 = m.Predict(w1, w2);                   // [B, P] → [B, P]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "experiments/models/model.h"
#include "experiments/train/zoo_grid.h"
#include "store/logger.h"
#include "store/options.h"
#include "store/run_store.h"

namespace tb {

// Bump when a change makes the merger train to other weights (part of every merger key).
constexpr int kMergerVersion = 1;

// The TransformerAE's shape. Report: d_model 960, layers 4, heads 4, d_ff 960, neck 512,
// dropout 0.07, sequence 50 (26 tokens of 80 values, 24 of 16).
struct MergerConfig {
  std::string tokens = "report";  // report: 26 × 80 + 24 × 16; neuron: one per output neuron
  int64_t d_model = 64;
  int64_t layers = 1;  // N: pre-norm blocks in each encoder and in the decoder
  int64_t heads = 4;
  int64_t d_ff = 128;
  int64_t neck = 64;
  double dropout = 0.07;

  void Bind(Options& o, const std::string& prefix);
  void Check(const std::string& prefix) const;  // BadInput naming the value
  nlohmann::json ToJson() const;
};

// How the merger is trained: Adam on the training triples, gradients clipped at `clip`, the
// epoch with the lowest validation loss kept.
struct MergerTraining {
  int64_t epochs = 30;
  int64_t batch_size = 36;  // the report's
  double lr = 1e-3;
  double clip = 1.0;        // the report's gradient clipping norm
  int64_t augment = 0;      // N > 0: N neuron-permuted copies of every training triple (inputs and target alike)
  int64_t max_triples = 0;  // > 0: a seeded subsample of the training triples
  std::string loss = "mse";          // a registered loss (transferbench list losses)
  std::string loss_options;          // "k=v,k=v": the loss's options
  std::string normalize = "layer";   // layer: standardise every layer over the training set; none
  int64_t probe = 32;                // images the functional losses run the networks on
  // Every this many epochs (and at the first and the last), LogPredictionDiagnostics of the
  // first validation pair; 0: never. Draws no random numbers, so it is not part of the key.
  int64_t diagnose_every = 5;

  void Bind(Options& o, const std::string& prefix);
  void Check(const std::string& prefix) const;
  nlohmann::json ToJson() const;
};

// Which triples train, validate and test: by the union class set C1 ∪ C2, so that every pair
// with a test union (its target model) is held out. With `test_unions` given, exactly those are
// test; otherwise a seeded hash of each union puts it in test with probability `test`. Of the
// rest, a share `val` validates.
struct MergerSplit {
  double val = 0.1;
  double test = 0.2;
  int64_t seed = 0;
  std::vector<std::vector<int64_t>> test_unions;

  void Bind(Options& o, const std::string& prefix);  // split.test_pairs as "01+23;4+56" → unions
  void Check(const std::string& prefix) const;
  nlohmann::json ToJson() const;
  // "train", "val" or "test" for a union class set (sorted).
  std::string Of(const std::vector<int64_t>& union_classes) const;

  std::string test_pairs;  // the option's text, parsed by Check into test_unions
};

// BadInput unless C1 ∪ C2 is in the split's test set (a learned merger, or the mean of its
// targets, is evaluated only on pairs whose target it never saw).
void CheckTestPair(const MergerSplit& split, const std::vector<int64_t>& classes_1, const std::vector<int64_t>& classes_2);

struct ZooTriple {
  int64_t a = 0, b = 0, u = 0;  // rows of ZooTriples::models: W1, W2, W3
  std::vector<int64_t> classes_1, classes_2;
};

struct ZooTriples {
  torch::Tensor models;  // [M, P] float32, CPU: every checkpoint the triples use
  std::vector<std::vector<int64_t>> model_classes;  // each row's class set
  std::vector<ZooTriple> train, val, test;
  ModelSpec spec;
};

// Every ordered pair (C1, C2) of disjoint class sets the grid has, with C1 ∪ C2 in the grid too,
// at epoch bin `bin` (each unit's latest checkpoint ≤ bin) of one activation, init and seed.
// BadInput when the grid has no triple or the split leaves training or test empty.
ZooTriples LoadZooTriples(RunStore& store, const ZooGrid& grid, const std::string& dataset_sha256,
                          const std::string& activation, const std::string& init, int64_t seed, int64_t bin,
                          const MergerSplit& split);

// The tokens of a flat weight vector: groups of equally sized tokens, each group's entries as an
// index tensor [count, size] into the vector; the groups partition it.
std::vector<torch::Tensor> Tokenisation(const std::string& tokens, const ModelSpec& spec);

class TransformerAEImpl;

// A trained (or loaded) merger.
struct TrainedMerger {
  std::shared_ptr<TransformerAEImpl> model;
  std::string hash;
  bool trained = false;  // false: loaded from the cache
  nlohmann::json metrics;
  // W3 from W1 and W2, [B, P] each (eval mode, no gradients), on the merger's device.
  torch::Tensor Predict(const torch::Tensor& w1, const torch::Tensor& w2) const;
};

struct MergerRequest {
  const ZooGrid* grid = nullptr;
  std::string dataset_sha256;
  std::string activation, init;
  int64_t seed = 0;  // the grid's seed of the triples; also the merger's initialisation and batch order
  int64_t bin = 0;
  MergerSplit split;
  MergerConfig config;
  MergerTraining training;
  std::string targets = "trained";  // shuffled: targets permuted across the training triples (the control)
  torch::Device device = torch::kCPU;
  int64_t threads = 1;
  std::string blas;
  std::string zoo_dir;

  nlohmann::json Spec() const;  // everything that determines the merger's weights
};

struct MergeZooSource;  // experiments/protocols/merge.h

// A merge method's merger options (merger.* and split.*), and what they select: the zoo triples
// and the request for the merger. Every method built on the learned merger (transformer_merge,
// kan_refine, mlp_refine) makes its request here, so that one configuration finds one cached merger.
struct MergerOptions {
  MergerConfig config;
  MergerTraining training;
  MergerSplit split;

  void Bind(Options& o);
  void Check() const;  // BadInput naming the value
  ZooTriples Triples(const MergeZooSource& zoo) const;
  // targets: "trained", or "shuffled" for the control.
  MergerRequest Request(const MergeZooSource& zoo, torch::Device device, const std::string& targets) const;
};

// Loads the cached merger of `request`, or trains it on `triples` (logging its curve as
// merger/train_loss, merger/val_loss, merger/val_mse per epoch) and caches it.
TrainedMerger GetMerger(const MergerRequest& request, const ZooTriples& triples, RunStore& store, RunLogger* log);

// An untrained merger (xavier-initialised, seeded by torch::manual_seed) and its prediction in
// weight space, with gradients (for benchmarks and tests; GetMerger trains and caches).
std::shared_ptr<torch::nn::Module> MakeMerger(const MergerConfig& config, const ModelSpec& spec);
torch::Tensor MergerForward(torch::nn::Module& merger, const torch::Tensor& w1, const torch::Tensor& w2);

// `count` seeded permutations of the hidden neurons as index vectors [count, P]: gathering a flat
// weight vector with one gives a network that computes the same function (augment=N).
torch::Tensor NeuronPermutations(const ModelSpec& spec, int64_t count, uint64_t seed);

// Flat weights of a model in parameter order [P], and back.
torch::Tensor FlatWeights(Classifier& model);
ModelPtr FromFlat(const ModelSpec& spec, const torch::Tensor& flat, torch::Device device);

}  // namespace tb
