// kan_refine: the weight-task merging report's closing hypothesis (section 5.6): fine-tuning
// closes a predicted CNN's gap within one or two hundred steps, so the map from the learned
// merger's prediction P to its fine-tuned version F may be simple enough for a Kolmogorov-Arnold
// network. The run takes the cached transformer_merge merger (the same merger.* and split.*
// options find the same cache), fine-tunes its predictions of a seeded sample of refine.pairs
// training triples for refine.steps Adam steps each on their union's training images (P → F),
// and trains one KAN [d, refine.hidden, d] per CNN layer (B-splines of order refine.order on
// refine.grid intervals over [-refine.range, refine.range]) from each neuron's standardised
// token of P to the standardised residual F − P; a share refine.val of the pairs validates (the
// epoch of lowest validation loss kept). The merged model is the run's prediction P plus the
// refiner's residual. mlp_refine is its control: the same with a Linear-SiLU-Linear of the same
// parameter count in place of each KAN. Pairs and refiners are cached (experiments/merge/refiner.h);
// the run's pair must be a test pair of the merger's split, and source must be trained.
#include <fmt/format.h>

#include "experiments/merge/merger.h"
#include "experiments/merge/refiner.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {
namespace {

struct RefineMergeOptions {
  MergerOptions merger;
  RefinerOptions refine;
  void Bind(Options& o) {
    merger.Bind(o);
    refine.Bind(o, "refine.");
  }
};

// kan_refine and mlp_refine: one class, the net its only difference.
class RefineMerge : public MethodWithOptions<RefineMergeOptions, MergeMethod> {
 public:
  explicit RefineMerge(std::string net) : net_(std::move(net)) {}
  bool NeedsZooGrid() const override { return true; }
  bool HandlesSource() const override { return true; }
  void Check() const override {
    opts().merger.Check();
    opts().refine.Check("refine.");
  }
  void CheckPair(const std::vector<int64_t>& c1, const std::vector<int64_t>& c2) const override {
    CheckTestPair(opts().merger.split, c1, c2);
  }

  MergeResult Merge(MergeContext& ctx) override {
    const std::string name = net_ + "_refine";
    if (!ctx.zoo) throw BadInput(fmt::format("{}: learns from a zoo grid's models (expected zoo.grid=NAME)", name));
    const MergeZooSource& zoo = *ctx.zoo;
    if (zoo.source != "trained") {
      throw BadInput(fmt::format("source={}: {} refines the trained merger's prediction and has no control of that kind "
                                 "(its control is mlp_refine; transformer_merge's is source=shuffled); expected "
                                 "source=trained", zoo.source, name));
    }
    const ZooTriples triples = opts().merger.Triples(zoo);
    // The request transformer_merge makes for source=trained, so that its cached merger is the one found.
    const MergerRequest req = opts().merger.Request(zoo, ctx.device, "trained");
    const TrainedMerger merger = GetMerger(req, triples, *zoo.store, &ctx.log);
    const TrainedRefiner refiner = GetRefiner(net_, req, merger, triples, opts().refine, *zoo.store, &ctx.log);
    const auto& m = refiner.metrics;
    ctx.log.Text(fmt::format("refiner {} {} ({}): {} pairs, best epoch {}, validation weight MSE {:.4g} against {:.4g} "
                             "unrefined", net_, refiner.hash.substr(0, 12), refiner.trained ? "trained" : "from the cache",
                             m.value("pairs", 0), m.value("best_epoch", 0), m.value("val_mse", 0.0),
                             m.value("val_mse_none", 0.0)));

    const torch::Tensor w1 = FlatWeights(*ctx.parent1).unsqueeze(0), w2 = FlatWeights(*ctx.parent2).unsqueeze(0);
    const torch::Tensor predicted = merger.Predict(w1, w2).to(torch::kCPU, torch::kFloat);
    const torch::Tensor refined = refiner.Refine(predicted).to(torch::kCPU);
    MergeResult r;
    r.model = FromFlat(ctx.parent1->spec(), refined[0], ctx.device);
    for (const auto& [key, value] : merger.metrics.items()) {
      if (value.is_number()) r.diagnostics["merger_" + key] = value.get<double>();
    }
    r.diagnostics["merger_cached"] = merger.trained ? 0 : 1;
    for (const auto& [key, value] : m.items()) {
      if (value.is_number()) r.diagnostics["refine_" + key] = value.get<double>();
    }
    r.diagnostics["refine_cached"] = refiner.trained ? 0 : 1;
    r.diagnostics["refine_pairs_computed"] = refiner.pairs_computed ? 1 : 0;  // 0: from the cache, or not needed
    // How far the refiner moves this run's prediction.
    r.diagnostics["refine_delta_mse"] = (refined - predicted).pow(2).mean().item<double>();
    return r;
  }

 private:
  std::string net_;
};

class KanRefine : public RefineMerge {
 public:
  KanRefine() : RefineMerge("kan") {}
};

class MlpRefine : public RefineMerge {
 public:
  MlpRefine() : RefineMerge("mlp") {}
};

}  // namespace

TB_REGISTER_METHOD(kan_refine, KanRefine, "KAN refinement of the learned merger's prediction",
                   "the weight-task merging report, closing hypothesis (section 5.6, KAN); Liu et al. 2024");
TB_REGISTER_METHOD(mlp_refine, MlpRefine, "MLP refinement of the learned merger's prediction (KAN control)",
                   "the weight-task merging report, closing hypothesis: its control");

}  // namespace tb
