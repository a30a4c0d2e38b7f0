// transformer_merge: the weight-task merging report's learned merger (section 4), a two-encoder
// TransformerAE trained on the zoo grid's triples (W1 on C1, W2 on C2 → the model on C1 ∪ C2) of
// the run's activation, init, seed and epoch bin, split by the union class set; the run's pair
// must be a test pair, so its target was never seen. The trained merger is cached (its curve
// logged by the run that trained it); its prediction from the run's W1 and W2 is the merged
// model. Under source=shuffled it is the control the issue asks a learned merger to beat: the
// same merger trained with its targets shuffled across the training pairs. zoo_mean (a reference
// row, zoo_mean.cpp) is what a collapsed merger would output.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/merge/merger.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {
namespace {

class TransformerMerge : public MethodWithOptions<MergerOptions, MergeMethod> {
 public:
  bool NeedsZooGrid() const override { return true; }
  bool HandlesSource() const override { return true; }
  void Check() const override { opts().Check(); }
  void CheckPair(const std::vector<int64_t>& c1, const std::vector<int64_t>& c2) const override {
    CheckTestPair(opts().split, c1, c2);
  }

  MergeResult Merge(MergeContext& ctx) override {
    if (!ctx.zoo) throw BadInput("transformer_merge: learns from a zoo grid's models (expected zoo.grid=NAME)");
    const MergeZooSource& zoo = *ctx.zoo;
    if (zoo.source == "random") {
      throw BadInput("source=random: transformer_merge's control is source=shuffled (the merger trained on shuffled "
                     "targets); expected source=trained or shuffled");
    }
    const ZooTriples triples = opts().Triples(zoo);
    const MergerRequest req = opts().Request(zoo, ctx.device, zoo.source == "shuffled" ? "shuffled" : "trained");
    const TrainedMerger merger = GetMerger(req, triples, *zoo.store, &ctx.log);
    ctx.log.Text(fmt::format("merger {} ({}): {} training triples, best epoch {}, test weight MSE {:.3g}",
                             merger.hash.substr(0, 12), merger.trained ? "trained" : "from the cache",
                             merger.metrics.value("train_triples", 0), merger.metrics.value("best_epoch", 0),
                             merger.metrics.value("test_mse", 0.0)));
    const torch::Tensor w1 = FlatWeights(*ctx.parent1).unsqueeze(0), w2 = FlatWeights(*ctx.parent2).unsqueeze(0);
    MergeResult r;
    r.model = FromFlat(ctx.parent1->spec(), merger.Predict(w1, w2)[0], ctx.device);
    for (const auto& [key, value] : merger.metrics.items()) {
      if (value.is_number()) r.diagnostics["merger_" + key] = value.get<double>();
    }
    r.diagnostics["merger_cached"] = merger.trained ? 0 : 1;
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(transformer_merge, TransformerMerge, "TransformerAE merger (learned)",
                   "the weight-task merging report, section 4");

}  // namespace tb
