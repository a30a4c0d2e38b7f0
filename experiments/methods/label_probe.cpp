// label_probe: the reference every transfer method must beat, with no source at all. A stays
// frozen; only its transfer-class row and bias are trained (logistic regression on A's
// penultimate features, through the full 10-way softmax with the other rows fixed), on the
// same class-4 and S_A training samples the surgery methods see. With several transfer classes
// each has its own trained row and each sample is pulled toward its own class. Transfer that
// does not exceed it did not come from B. Options: steps (200), lr (0.01), batch_size (64, half
// transfer-class, half S_A samples).
#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "experiments/protocols/surgery.h"
#include "experiments/surgery/injection.h"
#include "store/errors.h"

namespace tb {
namespace {

struct LabelProbeOptions {
  int64_t steps = 200;
  double lr = 0.01;
  int64_t batch_size = 64;
  void Bind(Options& o) {
    o.Add("steps", &steps, "optimizer steps");
    o.Add("lr", &lr, "Adam learning rate");
    o.Add("batch_size", &batch_size, "samples per step, half of them of the transfer class");
  }
};

class LabelProbe : public MethodWithOptions<LabelProbeOptions, SurgeryMethod> {
 public:
  bool SeveralTransferClasses() const override { return true; }
  void Check(const MethodCheck&) const override {
    RequireAtLeast("steps", static_cast<double>(opts().steps), 0);
    RequireAtLeast("batch_size", static_cast<double>(opts().batch_size), 2);
    if (!(opts().lr > 0)) throw BadInput(fmt::format("lr={}: expected > 0", opts().lr));
  }
  MethodResult Run(MethodContext& ctx) override {
    const auto& o = opts();
    const auto& d = ctx.data;
    const auto& classes = d.classes.transfer;
    if (d.transfer_train.size() == 0) throw BadInput("label_probe: no training samples of the transfer classes");
    auto& a = *ctx.target;
    auto ft = FeaturesOf(a, d.transfer_train.images, ctx.device);
    auto yt = d.transfer_train.labels.to(ctx.device);  // each sample toward its own class
    auto fp = FeaturesOf(a, d.a_train.images, ctx.device);
    auto yp = d.a_train.labels.to(ctx.device);
    std::vector<torch::Tensor> rows, biases, masks;
    auto frozen_w = a.head->weight.detach();
    auto frozen_b = a.head->bias.detach();
    auto mask_all = torch::zeros({frozen_w.size(0)}, frozen_w.options());
    for (int64_t t : classes) {
      rows.push_back(a.head->weight[t].detach().clone().set_requires_grad(true));
      biases.push_back(a.head->bias[t].detach().clone().set_requires_grad(true));
      masks.push_back(torch::zeros({frozen_w.size(0)}, frozen_w.options()));
      masks.back()[t] = 1;
      mask_all[t] = 1;
    }
    std::vector<torch::Tensor> params;
    for (size_t j = 0; j < rows.size(); ++j) params.insert(params.end(), {rows[j], biases[j]});
    torch::optim::Adam opt(params, torch::optim::AdamOptions(o.lr));
    const int64_t half = std::max<int64_t>(1, o.batch_size / 2);
    // The full 10-way logits with the transfer rows trainable and every other row frozen.
    auto logits = [&](const torch::Tensor& f) {
      auto l = f.mm(frozen_w.t()) + frozen_b;
      auto out = l * (1 - mask_all);
      for (size_t j = 0; j < rows.size(); ++j) out = out + (f.mv(rows[j]) + biases[j]).unsqueeze(1) * masks[j];
      return out;
    };
    double loss_value = 0;
    for (int64_t step = 0; step < o.steps; ++step) {
      auto it = torch::tensor(PortablePermutation(ft.size(0), ctx.seed * 7727ULL + step), torch::kInt64)
                    .slice(0, 0, std::min(half, ft.size(0))).to(ctx.device);
      auto ip = torch::tensor(PortablePermutation(fp.size(0), ctx.seed * 7741ULL + step), torch::kInt64)
                    .slice(0, 0, std::min(half, fp.size(0))).to(ctx.device);
      auto f = torch::cat({ft.index_select(0, it), fp.index_select(0, ip)});
      auto y = torch::cat({yt.index_select(0, it), yp.index_select(0, ip)});
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(logits(f), y);
      loss.backward();
      opt.step();
      loss_value = loss.item<double>();
      ctx.log.Scalar("label_probe/loss", loss_value, step + 1);
    }
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < classes.size(); ++j) {
      a.head->weight[classes[j]].copy_(rows[j]);
      a.head->bias[classes[j]].copy_(biases[j]);
    }
    return {ctx.target, {{"final_loss", loss_value}}};
  }
};

}  // namespace

TB_REGISTER_METHOD(label_probe, LabelProbe, "Label probe (no source)",
                   "reference: linear probe of the new class on the frozen target");

}  // namespace tb
