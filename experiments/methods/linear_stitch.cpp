// linear_stitch: the simple baseline the surgery report does not try. Fit by least squares
// (optional ridge term) a linear map M, with bias, from A's penultimate features to B's, on B's
// training images (option `shared_only`: only the classes both models were trained on), then
// set A's class-4 row and bias to B's class-4 row composed with M: A' computes
// w4_B · (M f_A(x) + m) + b4_B. Nothing else of A changes. Logs the stitch's relative error.
// Works across widths. Reference: model stitching (Lenc & Vedaldi 2015; Bansal et al. 2021).
#include "experiments/protocols/surgery.h"
#include "experiments/surgery/injection.h"

namespace tb {
namespace {

struct LinearStitchOptions {
  double ridge = 1e-3;
  bool shared_only = false;
  void Bind(Options& o) {
    o.Add("ridge", &ridge, "ridge term on the stitch's weights (0: plain least squares)");
    o.Add("shared_only", &shared_only, "fit on the shared classes' images only");
  }
};

class LinearStitch : public MethodWithOptions<LinearStitchOptions, SurgeryMethod> {
 public:
  bool SeveralTransferClasses() const override { return true; }
  void Check(const MethodCheck&) const override { RequireAtLeast("ridge", opts().ridge, 0); }
  MethodResult Run(MethodContext& ctx) override {
    MetricMap diag;
    ApplyHead("stitch_row", *ctx.target, *ctx.source, ctx.data, ctx.device, opts().ridge, opts().shared_only, diag, "");
    return {ctx.target, diag};
  }
};

}  // namespace

TB_REGISTER_METHOD(linear_stitch, LinearStitch, "Linear stitch of the head row",
                   "model stitching: Lenc & Vedaldi 2015, Bansal et al. 2021");

}  // namespace tb
