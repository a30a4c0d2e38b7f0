// merge_continual (continual): after each task, a model trained on the new task alone from the
// shared initial checkpoint (the zoo's) is merged into the current model by a merge method of the
// `merge` protocol (option `merge`, with that method's declared options). The two "parents" are
// the current model (every class so far) and the task model.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/protocols/continual.h"
#include "store/errors.h"

namespace tb {
namespace {

std::vector<std::string> MergeMethodNames() {
  std::vector<std::string> names;
  for (const auto& name : Methods().Names()) {
    auto m = Methods().Find(name).make();
    auto* merge = dynamic_cast<MergeMethod*>(m.get());
    if (merge && !merge->IsReference()) names.push_back(name);
  }
  return names;
}

struct MergeContinualOptions {
  std::string merge = "weight_average";
  void Bind(Options& o) { o.Add("merge", &merge, "the merge method that folds each new task in (a merge-protocol method, not a reference)"); }
};

class MergeContinual : public MethodWithOptions<MergeContinualOptions, ContinualMethod> {
 public:
  void Check() const override {
    const auto names = MergeMethodNames();
    if (std::find(names.begin(), names.end(), opts().merge) == names.end()) {
      throw BadInput(fmt::format("merge={}: expected a merge method ({})", opts().merge, fmt::join(names, ", ")));
    }
  }
  bool UsesTaskModels() const override { return true; }
  ModelPtr Step(ContinualStep& s) override {
    Check();
    auto method = Methods().Find(opts().merge).make();
    auto& merge = dynamic_cast<MergeMethod&>(*method);
    MergeContext ctx{s.data, s.current, s.task_model, s.init, nullptr, s.device, s.log, s.seed};
    MergeResult r = merge.Merge(ctx);
    for (const auto& [k, v] : r.diagnostics) s.log.Scalar(opts().merge + "/" + k, v, s.k);
    return r.model;
  }
};

}  // namespace

TB_REGISTER_METHOD(merge_continual, MergeContinual, "Continual learning by merging",
                   "the weight-task merging report, section 5.1");

}  // namespace tb
