// distillation: the weight-transfer document's progressive knowledge distillation — the target
// trains with 0.5 · KL(teacher ‖ student) on temperature-2 softmaxes (kl_div with batchmean, no
// T² factor, as the document writes it) + 0.5 · cross entropy on the labels, the source as
// teacher, within the protocol's step budget: the registered loss `kd` with t_squared=false. From the target's own initialisation
// (distillation) or after weight_map (mapped_distillation: the document's pipeline, mapping
// then distilling).
#include <fmt/format.h>

#include "experiments/losses/loss.h"
#include "experiments/protocols/bootstrap.h"

namespace tb {
namespace {

struct DistillationOptions {
  double temperature = 2.0;
  double kl_weight = 0.5;
  std::string init = "none";
  MappingChoice mapping;
  void Bind(Options& o) {
    o.Add("temperature", &temperature, "softmax temperature of teacher and student");
    o.Add("kl_weight", &kl_weight, "weight of the KL term (the task loss gets 1 - kl_weight)");
    o.Add("init", &init, "the target's start: none (its own initialisation) or weight_map", {"none", "weight_map"});
    mapping.Bind(o);
  }
};

class Distillation : public MethodWithOptions<DistillationOptions, BootstrapMethod> {
 public:
  void CheckPair(Classifier& source, Classifier& target) const override {
    if (!(opts().temperature > 0)) throw BadInput(fmt::format("temperature={}: expected > 0", opts().temperature));
    if (!(opts().kl_weight >= 0 && opts().kl_weight <= 1)) {
      throw BadInput(fmt::format("kl_weight={}: expected in [0, 1]", opts().kl_weight));
    }
    if (opts().init == "weight_map") opts().mapping.Resolve(source, target);
  }
  std::string DryRun(Classifier& source, Classifier& target) const override {
    std::string out = fmt::format("loss {} · KL(T={}) + {} · cross entropy; init={}\n", opts().kl_weight,
                                  opts().temperature, 1 - opts().kl_weight, opts().init);
    if (opts().init == "weight_map") {
      const MappingTable t = opts().mapping.Resolve(source, target);
      out += FormatMapping(t, DescribeMapping(source, target, t));
    }
    return out;
  }
  MetricMap Initialise(BootstrapContext& ctx) override {
    ctx.source->eval();
    kd_ = Losses().Find("kd").make();
    kd_->options().SetText("temperature", fmt::format("{}", opts().temperature));
    kd_->options().SetText("alpha", fmt::format("{}", opts().kl_weight));
    kd_->options().SetText("t_squared", "false");
    if (opts().init != "weight_map") return {};
    const MappingTable t = opts().mapping.Resolve(*ctx.source, *ctx.target);
    ctx.log.Text(FormatMapping(t, ApplyMapping(*ctx.source, *ctx.target, t, opts().mapping.Pad())));
    return {};
  }
  torch::Tensor Loss(BootstrapContext& ctx, const torch::Tensor& logits, const torch::Tensor& inputs,
                     const torch::Tensor& labels) override {
    LossInputs in;
    in.logits = logits;
    in.labels = labels;
    {
      torch::NoGradGuard no_grad;
      in.teacher_logits = ctx.logits(*ctx.source, inputs);  // text: every step's, as the student's
    }
    return kd_->Compute(in);
  }

 protected:
  DistillationOptions& defaults() { return mutable_opts(); }

 private:
  std::unique_ptr<::tb::Loss> kd_;
};

class MappedDistillation : public Distillation {
 public:
  MappedDistillation() { defaults().init = "weight_map"; }
};

}  // namespace

TB_REGISTER_METHOD(distillation, Distillation, "Progressive knowledge distillation",
                   "the weight-transfer document, Advanced techniques 3; Hinton et al. 2015");
TB_REGISTER_METHOD(mapped_distillation, MappedDistillation, "Weight mapping, then distillation",
                   "the weight-transfer document's pipeline (bootstrap_guce_cfc_from_xlstm)");

}  // namespace tb
