// zoo_mean (reference): the entry-wise mean of the learned merger's training targets (the union
// models of every training triple, as often as they occur), whatever the parents: what a merger
// that has collapsed to one output predicts. A learned merger must beat it to mean anything.
// Its split.* options must match the merger's to be the same reference.
#include <fmt/format.h>

#include "experiments/merge/merger.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {
namespace {

struct ZooMeanOptions {
  MergerSplit split;
  void Bind(Options& o) { split.Bind(o, "split."); }
};

class ZooMean : public MethodWithOptions<ZooMeanOptions, MergeMethod> {
 public:
  bool IsReference() const override { return true; }
  bool UsesParents() const override { return false; }
  bool NeedsZooGrid() const override { return true; }
  void Check() const override { opts().split.Check("split."); }
  void CheckPair(const std::vector<int64_t>& c1, const std::vector<int64_t>& c2) const override {
    CheckTestPair(opts().split, c1, c2);
  }
  MergeResult Merge(MergeContext& ctx) override {
    if (!ctx.zoo) throw BadInput("zoo_mean: learns from a zoo grid's models (expected zoo.grid=NAME)");
    const MergeZooSource& zoo = *ctx.zoo;
    const ZooTriples t = LoadZooTriples(*zoo.store, *zoo.grid, zoo.dataset_sha256, zoo.activation, zoo.init, zoo.seed,
                                        zoo.bin, opts().split);
    std::vector<int64_t> targets;
    for (const auto& triple : t.train) targets.push_back(triple.u);
    const torch::Tensor mean = t.models.index_select(0, torch::tensor(targets, torch::kInt64)).mean(0);
    MergeResult r;
    r.model = FromFlat(ctx.parent1->spec(), mean, ctx.device);
    r.diagnostics["train_triples"] = static_cast<double>(targets.size());
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(zoo_mean, ZooMean, "Zoo mean of the merger's targets (reference)", "the TransformerAE issue: the collapsed-merger reference");

}  // namespace tb
