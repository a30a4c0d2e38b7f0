// The `bootstrap` protocol (the weight-transfer and bootstrapping document): a source model B of
// one architecture, trained in the zoo on the task; a target architecture A; the method
// initialises the target from the source (or from nothing), and the target then trains for a
// step budget on the task with the run's seed, evaluated every k steps on the test split. Logged:
// the learning curve (curve/acc, and curve/random_init_acc for the reference), step0, final,
// aulc, steps_to_target (the first evaluated step at target_fraction, 0.9, of the source's accuracy) and whether it
// was reached, speedup over the random-init reference (paired by seed: the same target
// initialisation and batches), and dead_capacity (the share of target parameters that never
// changed). The run-level control (source=random|shuffled) replaces the source; the random-init
// reference is trained once per seed and target and cached under <zoo>/curves/.
// Two tasks: sequential images (dataset fashion-mnist or mnist: accuracy) and character-level
// language modelling (dataset fortunes or text: bits per character, lower is better; the source
// a language model of the zoo trained for source.lm.steps; the metrics then step0_bpc, final_bpc,
// aulc_bpc, source_bpc, curve/bpc and curve/random_init_bpc, and steps_to_target the steps to
// target_ratio, 1.1, × the source's bits per character).
// The interface its methods implement is BootstrapMethod.
//
//   class MyInit : public tb::MethodWithOptions<MyOptions, tb::BootstrapMethod> {
//     tb::MetricMap Initialise(tb::BootstrapContext& ctx) override;   // ctx.target from ctx.source
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/data/text.h"
#include "experiments/methods/method.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/models/weight_mapping.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

// The task: sequential images (dataset, classes, splits) or character-level language modelling
// (corpus, evaluation windows).
struct BootstrapData {
  const Dataset* dataset = nullptr;
  std::vector<int64_t> classes;  // the task's classes (sorted)
  Split fit, val;                // what the source was trained on, and its validation split
  Split test;                    // the evaluation images (eval.test_per_class of each class)
  const TextCorpus* corpus = nullptr;  // the text task's corpus (then dataset is null)
  torch::Tensor eval_windows;          // its test windows [W, seq_len + 1] (eval.chars symbols)
  bool text() const { return corpus != nullptr; }
};

// The training logits of a model for a batch's inputs: [N, C] for images, [N · T, V] (every
// step's next-symbol logits) for text, so that a loss reads both alike.
using BatchLogits = std::function<torch::Tensor(Classifier& model, const torch::Tensor& inputs)>;

struct BootstrapContext {
  const BootstrapData& data;
  ModelPtr source;  // the zoo's trained source, or its control: a copy the method may read
  ModelPtr target;  // the target at its own initialisation; the method changes it or replaces it
  torch::Device device;
  RunLogger& log;
  uint64_t seed;
  BatchLogits logits = [](Classifier& model, const torch::Tensor& inputs) { return model.forward(inputs); };
};

class BootstrapMethod : public Method {
 public:
  std::string protocol() const override { return "bootstrap"; }
  // The random-init reference (every method's comparison row) says so.
  virtual bool IsReference() const { return false; }
  // Whether the method reads the source (random_init does not: a source control means nothing to it).
  virtual bool UsesSource() const { return true; }
  // Checks the method's options against the pair before anything is trained (BadInput naming the
  // value); given freshly made models of the two architectures.
  virtual void CheckPair(Classifier& source, Classifier& target) const {}
  // What the method would do to this pair, for --dry-run (the mapping with its shapes).
  virtual std::string DryRun(Classifier& source, Classifier& target) const { return ""; }
  // Sets ctx.target from ctx.source before training; returns the method's diagnostics.
  virtual MetricMap Initialise(BootstrapContext& ctx) = 0;
  // The training loss of one batch (default: cross entropy on the labels): logits and labels as
  // ctx.logits gives them (text: every step's, flattened), `inputs` the batch's images or ids.
  virtual torch::Tensor Loss(BootstrapContext& ctx, const torch::Tensor& logits, const torch::Tensor& inputs,
                             const torch::Tensor& labels);
};

// The mapping options weight_map, svd_init and the mapped distillation share: `table` (empty:
// the declared table of the pair, experiments/models/weight_mapping.cpp) and `pad`.
struct MappingChoice {
  std::string table;
  std::string pad = "zero";
  void Bind(Options& o);
  // The table for this pair, checked against the two models (BadInput naming the option).
  MappingTable Resolve(Classifier& source, Classifier& target) const;
  PadMode Pad() const { return ParsePadMode("pad", pad); }
};

// A learning curve: the evaluated steps (0 first) and the accuracy at each (bits per character
// on the text task).
struct LearningCurve {
  std::vector<int64_t> steps;
  std::vector<double> acc;
  double dead_capacity = 0;
};

// The first evaluated step whose value reaches `threshold` (at or above it; at or below it when
// lower is better, as bits per character), or -1.
int64_t StepsToTarget(const LearningCurve& curve, double threshold, bool lower_is_better = false);
// The speed-up over the random-init reference, paired by seed, from the steps each took to the
// target (-1: never within the budget): {reference steps / method steps, whether it is a lower
// bound}. Where the method is there at step 0 its steps count as one evaluation interval, and
// where the reference never gets there as the whole budget: both make the ratio a lower bound.
// Where the reference is there at step 0 no method is faster: 1 for one there too, else 0 (not
// bounds). nullopt where the method never gets there.
std::optional<std::pair<double, bool>> Speedup(int64_t method_steps, int64_t reference_steps, int64_t budget,
                                               int64_t eval_every);
// Area under the curve (trapezoids) over the steps run, divided by them: the mean accuracy over
// training, in [0, 1]; the step-0 accuracy for a curve of one point.
double AreaUnderCurve(const LearningCurve& curve);
// The share of entries of `after`'s parameters that are bit-identical to `before`'s (the same
// model before and after training): capacity that training never reached.
double DeadCapacity(const std::vector<torch::Tensor>& before, const std::vector<torch::Tensor>& after);

struct ProtocolContext;
// The target a bootstrap method makes on a scenario (bootstrap scenario options, e.g. classes,
// arch_a, arch_b, train.steps) as a run of the protocol makes it — the source from the zoo, its
// control, the method's initialisation, the step budget — without the reference curve: the model
// another protocol starts from (continual's start=<method>). BadInput for a method of another
// protocol or a bad option.
ModelPtr BootstrappedModel(const std::string& method, const std::vector<std::pair<std::string, nlohmann::json>>& scenario,
                           const std::string& control, ProtocolContext& ctx, LearningCurve* curve = nullptr);

}  // namespace tb
