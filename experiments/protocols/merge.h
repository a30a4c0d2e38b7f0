// The `merge` protocol (the weight-task merging report): parents W1 trained on C1 and W2 on C2
// (C1 ∩ C2 = ∅, both cnn2464 from the zoo, from one shared initial checkpoint or from two), W2
// replaced by its control when the run asks for one (source=random|shuffled), the method makes
// one model for C1 ∪ C2, and the protocol evaluates it at fine-tuning epoch 0 and follows it
// through fine-tuning on C1 ∪ C2: IID / OOD / shifted accuracy, joint and per-task accuracy,
// normalized accuracy, collapse, catch-up, stability, loss barriers, weight diagnostics. The
// interface its methods implement is MergeMethod.
//
//   class MyMerge : public tb::MethodWithOptions<MyOptions, tb::MergeMethod> {
//     tb::MergeResult Merge(tb::MergeContext& ctx) override;   // one model from ctx.parent1, ctx.parent2
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/methods/method.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/train/trainer.h"
#include "experiments/train/zoo_grid.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

// Evaluation batches small enough that their activations stay below glibc's mmap threshold (a
// 2048-image batch of cnn2464's first conv is 37 MB: mapped and unmapped again on every call).
constexpr int64_t kMergeEvalBatch = 512;

// The data of one merge scenario. Splits hold only the named classes.
struct MergeData {
  const Dataset* dataset = nullptr;
  std::vector<int64_t> classes_1, classes_2, classes;  // C1, C2 and C1 ∪ C2 (sorted)
  Split train_1, val_1;  // what W1 was trained and validated on
  Split train_2, val_2;  // what W2 was trained and validated on
  Split train, val;      // their unions: fine-tuning and choosing coefficients
  Split test;            // test images of C1 ∪ C2
};

// The zoo grid the run's models come from (zoo.grid), for methods that learn from the whole zoo
// (transformer_merge, zoo_mean).
struct MergeZooSource {
  const ZooGrid* grid = nullptr;
  int64_t bin = 0;
  std::string dataset_sha256, activation, init;
  int64_t seed = 0;  // the grid seed of W1 and the union model
  RunStore* store = nullptr;
  std::string zoo_dir;
  int64_t threads = 1;
  std::string blas;
  std::string source;  // the run-level control, for methods that apply it themselves (HandlesSource)
};

struct MergeContext {
  const MergeData& data;
  ModelPtr parent1, parent2;  // W1 and W2 (or its control); copies a method may change
  ModelPtr init;              // W1's initial checkpoint (W2's too when the parents share it)
  ModelPtr union_model;       // the model trained on C1 ∪ C2 from W1's initial checkpoint
  torch::Device device;
  RunLogger& log;
  uint64_t seed;
  const MergeZooSource* zoo = nullptr;  // null without zoo.grid
};

struct MergeResult {
  ModelPtr model;  // the merged model (fine-tuned by the protocol)
  // Set by a reference that is not one model (the ensemble): its logits. Such a result is
  // evaluated at epoch 0 only.
  std::function<torch::Tensor(const torch::Tensor&)> logits;
  // W2 as the method aligned it to W1 (permutation merging); the loss barrier is measured on
  // the path from W1 to it. Unset: W2 itself.
  ModelPtr aligned_parent2;
  MetricMap diagnostics;
};

// A method of the merge protocol. References (union_retrain, ensemble, init_control) say so:
// the barrier between the parents is not theirs, and the report lists them apart.
class MergeMethod : public Method {
 public:
  std::string protocol() const override { return "merge"; }
  virtual bool IsReference() const { return false; }
  // Whether the method reads the parents (union_retrain and init_control do not: the run-level
  // source control, which replaces W2, means nothing to them and is refused).
  virtual bool UsesParents() const { return true; }
  // Checks the method's own options before anything is trained or stored (BadInput naming the value).
  virtual void Check() const {}
  // Whether the method learns from the zoo grid (then zoo.grid is required), and its check of
  // the scenario's pair against what it learned from (e.g. a learned merger's test split).
  virtual bool NeedsZooGrid() const { return false; }
  virtual void CheckPair(const std::vector<int64_t>& classes_1, const std::vector<int64_t>& classes_2) const {}
  // Whether the method applies the run-level source control itself (MergeZooSource::source) instead
  // of being given W2's control: a learned merger's control is one trained on shuffled targets.
  virtual bool HandlesSource() const { return false; }
  virtual MergeResult Merge(MergeContext& ctx) = 0;
};

// Accuracy (10-way) of a model's logits on images whose label is in `classes`; with
// `restrict_to` given, the argmax runs over those classes only (task-aware accuracy).
double ClassAccuracy(const torch::Tensor& logits, const torch::Tensor& labels, const std::vector<int64_t>& classes,
                     const std::vector<int64_t>& restrict_to = {});

// At most `n` samples of `split`, chosen by a portable permutation seeded with `seed`.
Split Subsample(const Split& split, int64_t n, uint64_t seed);

// Images rotated by `degrees` about their centre (bilinear, zero fill): the fixed shift of
// shift_acc.
torch::Tensor Rotate(const torch::Tensor& images, double degrees);

// The coefficient λ in {0, step, …, max} whose merged weights score the highest 10-way accuracy
// on `val` (the first on a tie); `make(λ)` builds the model for a coefficient.
double ChooseLambda(const std::function<ModelPtr(double)>& make, const Split& val, double max, double step);

}  // namespace tb
