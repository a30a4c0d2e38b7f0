// The task-vector family of merge methods as one generalised class (mergekit's habit): a
// registered method is a combine rule (mean, sum, ties) with its options. weight_average,
// task_arithmetic and ties_merge are its settings (experiments/methods/).
//
//   class TaskArithmetic : public tb::TaskVectorMethod<tb::LambdaOptions> {
//    public:
//     TaskArithmetic() : TaskVectorMethod("sum") {}
//   };
#pragma once

#include <string>

#include <fmt/format.h>

#include "experiments/merge/merging.h"
#include "experiments/protocols/merge.h"
#include "store/errors.h"

namespace tb {

// No options: the plain mean of the parents.
struct NoMergeOptions {
  void Bind(Options&) {}
  double lambda = 1.0, lambda_max = 0, lambda_step = 1, density = 1.0;
  bool has_lambda = false;
};

// The coefficient λ of a task-vector merge: fixed, or chosen on the union's validation data
// over 0, step, …, max.
struct LambdaOptions {
  double lambda = -1;
  double lambda_max = 3;
  double lambda_step = 0.05;
  double density = 1.0;
  bool has_lambda = true;
  void Bind(Options& o) {
    o.Add("lambda", &lambda, "scaling of the merged task vector; -1: chosen on validation over 0, lambda.step, …, lambda.max");
    o.Add("lambda.max", &lambda_max, "largest λ tried when choosing on validation");
    o.Add("lambda.step", &lambda_step, "spacing of the λ tried when choosing on validation");
  }
};

// TIES: λ as above and the share of each task vector kept.
struct TiesOptions : LambdaOptions {
  TiesOptions() { density = 0.2; }
  void Bind(Options& o) {
    LambdaOptions::Bind(o);
    o.Add("density", &density, "share of each task vector's entries kept (largest magnitudes), in (0, 1]");
  }
};

template <class Opts>
class TaskVectorMethod : public MethodWithOptions<Opts, MergeMethod> {
 public:
  explicit TaskVectorMethod(std::string combine) : combine_(std::move(combine)) {}

  void Check() const override {
    const Opts& o = this->opts();
    if (o.has_lambda) {
      if (!(o.lambda >= 0 || o.lambda == -1)) throw BadInput(fmt::format("lambda={}: expected >= 0, or -1 to choose on validation", o.lambda));
      if (!(o.lambda_max >= 0)) throw BadInput(fmt::format("lambda.max={}: expected >= 0", o.lambda_max));
      if (!(o.lambda_step > 0)) throw BadInput(fmt::format("lambda.step={}: expected > 0", o.lambda_step));
      if (o.lambda == -1 && !(o.lambda_step <= o.lambda_max)) {
        throw BadInput(fmt::format("lambda.step={}: expected at most lambda.max={} (a grid of one point chooses nothing)",
                                   o.lambda_step, o.lambda_max));
      }
      if (o.lambda == -1 && o.lambda_max / o.lambda_step > 1000) {
        throw BadInput(fmt::format("lambda.step={}: the grid up to lambda.max={} would have {:.0f} points (expected at most 1000)",
                                   o.lambda_step, o.lambda_max, o.lambda_max / o.lambda_step + 1));
      }
    }
    if (!(o.density > 0 && o.density <= 1)) throw BadInput(fmt::format("density={}: expected a share in (0, 1]", o.density));
  }

  MergeResult Merge(MergeContext& ctx) override {
    Check();
    const Opts& o = this->opts();
    const Weights base = o.has_lambda ? GetWeights(*ctx.init) : Weights{};
    const std::vector<Weights> parents{GetWeights(*ctx.parent1), GetWeights(*ctx.parent2)};
    const ModelSpec spec = ctx.parent1->spec();
    auto make = [&](double lambda) {
      return FromWeights(spec, TaskVectorMerge(base, parents, {combine_, lambda, o.density}), ctx.device);
    };
    MergeResult r;
    const double lambda = !o.has_lambda ? 1.0 : o.lambda >= 0 ? o.lambda : ChooseLambda(make, ctx.data.val, o.lambda_max, o.lambda_step);
    r.model = make(lambda);
    if (o.has_lambda) r.diagnostics["lambda"] = lambda;
    return r;
  }

 private:
  std::string combine_;
};

}  // namespace tb
