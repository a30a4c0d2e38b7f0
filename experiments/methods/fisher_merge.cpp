// fisher_merge: Fisher-weighted averaging (Matena & Raffel 2022): each entry the mean of the
// parents' weights weighted by their diagonal empirical Fisher information, estimated on
// `samples` of each parent's own training images (squared gradients of the true label's
// log-likelihood, one image at a time); entries no parent is informed about get the plain mean.
#include <fmt/format.h>

#include "experiments/merge/merging.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {
namespace {

struct FisherOptions {
  int64_t samples = 256;
  void Bind(Options& o) { o.Add("samples", &samples, "training images per parent for its Fisher estimate"); }
};

class FisherMergeMethod : public MethodWithOptions<FisherOptions, MergeMethod> {
 public:
  void Check() const override { RequireAtLeast("samples", static_cast<double>(opts().samples), 1); }
  MergeResult Merge(MergeContext& ctx) override {
    Check();
    const Split s1 = Subsample(ctx.data.train_1, opts().samples, ctx.seed * 31 + 1);
    const Split s2 = Subsample(ctx.data.train_2, opts().samples, ctx.seed * 31 + 2);
    const Weights f1 = DiagonalFisher(*ctx.parent1, s1.images.to(ctx.device), s1.labels.to(ctx.device));
    const Weights f2 = DiagonalFisher(*ctx.parent2, s2.images.to(ctx.device), s2.labels.to(ctx.device));
    MergeResult r;
    r.model = FromWeights(ctx.parent1->spec(), FisherMerge({GetWeights(*ctx.parent1), GetWeights(*ctx.parent2)}, {f1, f2}),
                          ctx.device);
    double mass1 = 0, mass2 = 0;
    for (size_t i = 0; i < f1.size(); ++i) {
      mass1 += f1[i].second.sum().item<double>();
      mass2 += f2[i].second.sum().item<double>();
    }
    r.diagnostics["fisher_share_1"] = mass1 / (mass1 + mass2);
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(fisher_merge, FisherMergeMethod, "Fisher merging", "Matena & Raffel 2022, Merging models with Fisher-weighted averaging");

}  // namespace tb
