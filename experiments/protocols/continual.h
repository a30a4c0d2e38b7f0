// The `continual` protocol (continual learning by merging, the weight-task merging report's
// framing): a class-incremental task sequence (default split MNIST {0,1}, {2,3}, …, {8,9}); the
// first task's model comes from the zoo (cnn2464, from the shared initial checkpoint), and after
// each later task a step operator folds the new task into the current model. Every task is
// evaluated after every step: the accuracy matrix R (10-way) and its task-aware twin (argmax
// within the task's classes, Mammoth's task-IL reading), the random-init row b, and from them
// average accuracy, forgetting_max, forgetting_first, bwt and fwt (experiments/metrics/continual.h).
// The interface its methods implement is ContinualMethod.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "experiments/methods/method.h"
#include "experiments/protocols/merge.h"
#include "experiments/train/trainer.h"
#include "store/logger.h"

namespace tb {

// One step of the sequence: fold task k (k ≥ 1) into the model that has seen tasks 0..k-1.
struct ContinualStep {
  int64_t k = 0;
  ModelPtr current;     // the model after task k-1: a copy the step may change
  ModelPtr task_model;  // a model trained on task k alone from the shared initial checkpoint (zoo)
  ModelPtr init;        // the shared initial checkpoint
  // classes_1: every class seen so far, classes_2: task k's; train_1/val_1 the earlier tasks'
  // data (a method that needs statistics of the old tasks, RegMean's Gram matrices or a Fisher,
  // reads them as if it had kept them), train_2/val_2 task k's, train/val their unions.
  const MergeData& data;
  // The model trained from the shared initial checkpoint on these classes (the zoo's), for the
  // joint reference.
  std::function<ModelPtr(const std::vector<int64_t>& classes)> joint_model;
  TrainOptions train;  // the scenario's training options (the task models' too)
  torch::Device device;
  RunLogger& log;
  uint64_t seed;
};

class ContinualMethod : public Method {
 public:
  std::string protocol() const override { return "continual"; }
  // Checks the method's own options before anything is trained (BadInput naming the value).
  virtual void Check() const {}
  // Whether the steps read ContinualStep::task_model, the new knowledge that the run-level
  // source control (source=random|shuffled) replaces; a run with a control refuses the others.
  virtual bool UsesTaskModels() const { return false; }
  virtual ModelPtr Step(ContinualStep& step) = 0;
};

}  // namespace tb
