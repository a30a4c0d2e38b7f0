// permutation_merge: weight matching (Ainsworth et al. 2023, Git Re-Basin): W2's hidden units
// permuted to W1's by a linear assignment per layer (dlib's max_cost_assignment) over the
// weights touching that layer, layers revisited until no permutation changes; then the mean of
// W1 and the aligned W2. With a shared initial checkpoint the matching finds (nearly) the
// identity and this is weight_average; with different ones it is the point of the method. The
// loss barrier is measured on the path to the aligned W2.
#include <fmt/format.h>

#include "experiments/merge/merging.h"
#include "store/errors.h"
#include "experiments/protocols/merge.h"

namespace tb {
namespace {

struct PermutationOptions {
  int64_t rounds = 100;
  void Bind(Options& o) { o.Add("rounds", &rounds, "most passes over the layers before the matching stops"); }
};

class PermutationMerge : public MethodWithOptions<PermutationOptions, MergeMethod> {
 public:
  void Check() const override {
    RequireAtLeast("rounds", static_cast<double>(opts().rounds), 1);
    if (opts().rounds > 10000) throw BadInput(fmt::format("rounds={}: expected at most 10000", opts().rounds));
  }
  MergeResult Merge(MergeContext& ctx) override {
    Check();
    const Permutations perms = WeightMatching(*ctx.parent1, *ctx.parent2, ctx.seed, static_cast<int>(opts().rounds));
    MergeResult r;
    r.aligned_parent2 = Permuted(*ctx.parent2, perms);
    r.model = FromWeights(ctx.parent1->spec(),
                          TaskVectorMerge({}, {GetWeights(*ctx.parent1), GetWeights(*r.aligned_parent2)}, {"mean", 1, 1}),
                          ctx.device);
    int64_t moved = 0, units = 0;
    for (const auto& p : perms) {
      for (size_t i = 0; i < p.size(); ++i) moved += p[i] != static_cast<int64_t>(i);
      units += static_cast<int64_t>(p.size());
    }
    r.diagnostics["units_moved_share"] = static_cast<double>(moved) / static_cast<double>(units);
    return r;
  }
};

}  // namespace

TB_REGISTER_METHOD(permutation_merge, PermutationMerge, "Permutation merging (weight matching)",
                   "Ainsworth et al. 2023, Git Re-Basin");

}  // namespace tb
