// Output-space losses: the ones every method that trains a classifier starts from.
//  - cross_entropy: cross-entropy to the labels, with optional label smoothing
//    (Szegedy et al. 2016). Needs logits and labels.
//  - kd: knowledge distillation (Hinton, Vinyals & Dean 2015): alpha * T^2 * KL(softmax(t/T) ||
//    softmax(s/T)) + (1 - alpha) * cross-entropy to the labels. The T^2 factor keeps the soft
//    term's gradients on the scale of the hard one's (t_squared=false drops it, as the
//    weight-transfer document's distillation does). Needs logits and teacher_logits; labels
//    only when alpha < 1.
#include <fmt/format.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

void Require(const torch::Tensor& t, const char* loss, const char* field) {
  if (!t.defined()) throw BadInput(fmt::format("loss {}: needs {}", loss, field));
}

struct CrossEntropyOptions {
  double label_smoothing = 0.0;
  void Bind(Options& o) { o.Add("label_smoothing", &label_smoothing, "mass spread evenly over all classes"); }
};

class CrossEntropy : public LossWithOptions<CrossEntropyOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    Require(in.logits, "cross_entropy", "logits");
    Require(in.labels, "cross_entropy", "labels");
    const double eps = opts().label_smoothing;
    if (eps < 0 || eps >= 1) throw BadInput(fmt::format("label_smoothing={}: expected a value in [0, 1)", eps));
    auto logp = torch::log_softmax(in.logits, 1);
    auto nll = -logp.gather(1, in.labels.unsqueeze(1)).squeeze(1);
    auto smooth = -logp.mean(1);
    return ((1 - eps) * nll + eps * smooth).mean();
  }
};

struct DistillationOptions {
  double temperature = 4.0;
  double alpha = 0.9;
  bool t_squared = true;
  void Bind(Options& o) {
    o.Add("temperature", &temperature, "softmax temperature T for both models");
    o.Add("alpha", &alpha, "weight of the soft (teacher) term; 1 - alpha goes to the labels");
    o.Add("t_squared", &t_squared, "scale the soft term by T^2 (Hinton et al.); false: unscaled");
  }
};

class Distillation : public LossWithOptions<DistillationOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const auto& o = opts();
    Require(in.logits, "kd", "logits");
    Require(in.teacher_logits, "kd", "teacher_logits");
    if (!(o.temperature > 0)) throw BadInput(fmt::format("temperature={}: expected > 0", o.temperature));
    if (o.alpha < 0 || o.alpha > 1) throw BadInput(fmt::format("alpha={}: expected a value in [0, 1]", o.alpha));
    const double t = o.temperature;
    auto log_student = torch::log_softmax(in.logits / t, 1);
    auto log_teacher = torch::log_softmax(in.teacher_logits / t, 1);
    auto kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean();
    torch::Tensor loss = (o.t_squared ? o.alpha * t * t : o.alpha) * kl;
    if (o.alpha < 1) {
      Require(in.labels, "kd", "labels (alpha < 1)");
      loss = loss + (1 - o.alpha) * torch::nn::functional::cross_entropy(in.logits, in.labels);
    }
    return loss;
  }
};

}  // namespace

TB_REGISTER_LOSS(cross_entropy, CrossEntropy, "Cross-entropy", "label smoothing: Szegedy et al. 2016");
TB_REGISTER_LOSS(kd, Distillation, "Knowledge distillation", "Hinton, Vinyals & Dean 2015");

}  // namespace tb
