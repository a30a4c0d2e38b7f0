// regmean: RegMean (Jin et al. 2023), the closed-form merge of every linear and conv layer that
// best reproduces both parents' outputs on their own inputs: W* = (Σ G̃i)⁻¹ Σ G̃i Wi, Gi the Gram
// matrix of the layer's inputs in parent i on `samples` of its training images (a conv layer's
// over its unfolded patches), weights and bias solved together, G̃ = α G + (1 − α) diag(G).
#include <fmt/format.h>

#include "experiments/merge/merging.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {
namespace {

struct RegMeanOptions {
  double alpha = 0.9;
  int64_t samples = 1000;
  void Bind(Options& o) {
    o.Add("alpha", &alpha, "share of the Gram matrices' off-diagonal kept, in [0, 1] (1: plain RegMean)");
    o.Add("samples", &samples, "training images per parent for its Gram matrices");
  }
};

std::vector<std::pair<std::string, torch::Tensor>> Grams(Classifier& model, const Split& data) {
  std::vector<std::pair<std::string, torch::Tensor>> grams;
  const auto params = model.named_parameters();
  for (const LayerInput& in : LayerInputs(model, data.images)) {
    grams.emplace_back(in.name, InputGram(*params.find(in.name + ".weight"), in.input));
  }
  return grams;
}

class RegMean : public MethodWithOptions<RegMeanOptions, MergeMethod> {
 public:
  void Check() const override {
    if (!(opts().alpha >= 0 && opts().alpha <= 1)) throw BadInput(fmt::format("alpha={}: expected a share in [0, 1]", opts().alpha));
    RequireAtLeast("samples", static_cast<double>(opts().samples), 1);
  }
  MergeResult Merge(MergeContext& ctx) override {
    Check();
    const Split s1 = Subsample(ctx.data.train_1, opts().samples, ctx.seed * 31 + 1);
    const Split s2 = Subsample(ctx.data.train_2, opts().samples, ctx.seed * 31 + 2);
    auto g1 = Grams(*ctx.parent1, {s1.images.to(ctx.device), s1.labels});
    auto g2 = Grams(*ctx.parent2, {s2.images.to(ctx.device), s2.labels});
    MergeResult r;
    r.model = FromWeights(ctx.parent1->spec(),
                          RegMeanMerge({GetWeights(*ctx.parent1), GetWeights(*ctx.parent2)}, {g1, g2}, opts().alpha),
                          ctx.device);
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(regmean, RegMean, "RegMean", "Jin et al. 2023, Dataless knowledge fusion by merging weights of language models");

}  // namespace tb
