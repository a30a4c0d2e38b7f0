// union_retrain (reference): a fresh model trained on C1 ∪ C2 from W1's initial checkpoint with
// the parents' training options (the zoo's union model: when none stops early, as many steps as
// the two parents together), then fine-tuned like every merge. The upper reference for one model.
#include "experiments/protocols/merge.h"

namespace tb {
namespace {

class UnionRetrain : public MethodWithOptions<NoOptions, MergeMethod> {
 public:
  bool IsReference() const override { return true; }
  bool UsesParents() const override { return false; }
  MergeResult Merge(MergeContext& ctx) override {
    MergeResult r;
    r.model = ctx.union_model;
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(union_retrain, UnionRetrain, "Union retrain (reference)", "the weight-task merging report, section 2");

}  // namespace tb
