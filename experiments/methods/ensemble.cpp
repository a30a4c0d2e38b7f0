// ensemble (reference): the parents' averaged logits. Not one model of the parents' size, so not a
// merge: an upper reference at fine-tuning epoch 0 (it is not fine-tuned).
#include "experiments/protocols/merge.h"

namespace tb {
namespace {

class Ensemble : public MethodWithOptions<NoOptions, MergeMethod> {
 public:
  bool IsReference() const override { return true; }
  MergeResult Merge(MergeContext& ctx) override {
    MergeResult r;
    ModelPtr a = ctx.parent1, b = ctx.parent2;
    r.logits = [a, b](const torch::Tensor& images) { return (Logits(*a, images, kMergeEvalBatch) + Logits(*b, images, kMergeEvalBatch)) / 2; };
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(ensemble, Ensemble, "Ensemble of the parents (reference)", "averaged logits");

}  // namespace tb
