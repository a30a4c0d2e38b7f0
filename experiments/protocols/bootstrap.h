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
// The interface its methods implement is BootstrapMethod.
//
//   class MyInit : public tb::MethodWithOptions<MyOptions, tb::BootstrapMethod> {
//     tb::MetricMap Initialise(tb::BootstrapContext& ctx) override;   // ctx.target from ctx.source
//   };
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/methods/method.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/models/weight_mapping.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

struct BootstrapData {
  const Dataset* dataset = nullptr;
  std::vector<int64_t> classes;  // the task's classes (sorted)
  Split fit, val;                // what the source was trained on, and its validation split
  Split test;                    // the evaluation images (eval.test_per_class of each class)
};

struct BootstrapContext {
  const BootstrapData& data;
  ModelPtr source;  // the zoo's trained source, or its control: a copy the method may read
  ModelPtr target;  // the target at its own initialisation; the method changes it or replaces it
  torch::Device device;
  RunLogger& log;
  uint64_t seed;
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
  // The training loss of one batch (default: cross entropy on the labels).
  virtual torch::Tensor Loss(BootstrapContext& ctx, const torch::Tensor& logits, const torch::Tensor& images,
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

// A learning curve: the evaluated steps (0 first) and the accuracy at each.
struct LearningCurve {
  std::vector<int64_t> steps;
  std::vector<double> acc;
  double dead_capacity = 0;
};

// The first evaluated step whose accuracy reaches `threshold`, or -1.
int64_t StepsToTarget(const LearningCurve& curve, double threshold);
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
