// direct_copy: copy each transfer class's output row (and bias) of source B's head into
// target A's head; nothing else of A changes. This is the surgery report's stage-1 baseline
// ("Neural Network Surgery for Knowledge Transfer", stage 1), which found 0% transfer: A's
// penultimate features are not B's, so B's row reads them as noise. It needs A's and B's
// penultimate widths to be equal; a mapping between widths belongs to the cross-architecture
// methods. Options: `bias` (copy the bias too, default true).
#include <fmt/format.h>

#include "experiments/protocols/surgery.h"
#include "store/errors.h"

namespace tb {
namespace {

struct DirectCopyOptions {
  bool bias = true;
  void Bind(Options& o) { o.Add("bias", &bias, "copy the transfer rows' biases as well as their weights"); }
};

class DirectCopy : public MethodWithOptions<DirectCopyOptions, SurgeryMethod> {
 public:
  bool SeveralTransferClasses() const override { return true; }
  void Check(const MethodCheck& check) const override { RequireEqualWidths("direct_copy", check); }
  MethodResult Run(MethodContext& ctx) override {
    auto& a = *ctx.target;
    auto& b = *ctx.source;
    torch::NoGradGuard no_grad;
    double moved = 0;
    for (int64_t t : ctx.data.classes.transfer) {
      moved += (a.head->weight[t] - b.head->weight[t]).norm().item<double>();
      a.head->weight[t].copy_(b.head->weight[t]);
      if (opts().bias) a.head->bias[t].copy_(b.head->bias[t]);
    }
    return {ctx.target, {{"row_change_norm", moved}}};
  }
};

}  // namespace

TB_REGISTER_METHOD(direct_copy, DirectCopy, "Direct head-row copy",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 1");

}  // namespace tb
