// init_control (reference): the shared initial checkpoint itself, fine-tuned like every merge:
// what fine-tuning alone reaches from no knowledge of either parent. A merge that does not beat
// it after fine-tuning moved nothing worth keeping.
#include "experiments/protocols/merge.h"

namespace tb {
namespace {

class InitControl : public MethodWithOptions<NoOptions, MergeMethod> {
 public:
  bool IsReference() const override { return true; }
  bool UsesParents() const override { return false; }
  MergeResult Merge(MergeContext& ctx) override {
    MergeResult r;
    r.model = ctx.init;
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(init_control, InitControl, "Initial checkpoint (control)", "the weight-task merging report, section 2");

}  // namespace tb
