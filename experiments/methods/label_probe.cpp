// label_probe: the reference every transfer method must beat, with no source at all. A stays
// frozen; only its transfer-class row and bias are trained (logistic regression on A's
// penultimate features, through the full 10-way softmax with the other rows fixed), on the
// same class-4 and S_A training samples the surgery methods see. Transfer that does not exceed
// it did not come from B. Options: steps (200), lr (0.01), batch_size (64, half class-4, half
// S_A samples).
#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "experiments/methods/method.h"
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

class LabelProbe : public MethodWithOptions<LabelProbeOptions> {
 public:
  void Check(const MethodCheck&) const override {
    RequireAtLeast("steps", static_cast<double>(opts().steps), 0);
    RequireAtLeast("batch_size", static_cast<double>(opts().batch_size), 2);
    if (!(opts().lr > 0)) throw BadInput(fmt::format("lr={}: expected > 0", opts().lr));
  }
  MethodResult Run(MethodContext& ctx) override {
    const auto& o = opts();
    const auto& d = ctx.data;
    const int64_t t = d.classes.transfer.front();
    if (d.transfer_train.size() == 0) throw BadInput("label_probe: no training samples of the transfer class");
    auto& a = *ctx.target;
    auto ft = FeaturesOf(a, d.transfer_train.images, ctx.device);
    auto fp = FeaturesOf(a, d.a_train.images, ctx.device);
    auto yp = d.a_train.labels.to(ctx.device);
    auto row = a.head->weight[t].detach().clone().set_requires_grad(true);
    auto bias = a.head->bias[t].detach().clone().set_requires_grad(true);
    auto frozen_w = a.head->weight.detach();
    auto frozen_b = a.head->bias.detach();
    torch::optim::Adam opt({row, bias}, torch::optim::AdamOptions(o.lr));
    const int64_t half = std::max<int64_t>(1, o.batch_size / 2);
    auto logits = [&](const torch::Tensor& f) {
      auto l = f.mm(frozen_w.t()) + frozen_b;
      auto mask = torch::zeros({l.size(1)}, l.options());
      mask[t] = 1;
      return l * (1 - mask) + (f.mv(row) + bias).unsqueeze(1) * mask;
    };
    double loss_value = 0;
    for (int64_t step = 0; step < o.steps; ++step) {
      auto it = torch::tensor(PortablePermutation(ft.size(0), ctx.seed * 7727ULL + step), torch::kInt64)
                    .slice(0, 0, std::min(half, ft.size(0))).to(ctx.device);
      auto ip = torch::tensor(PortablePermutation(fp.size(0), ctx.seed * 7741ULL + step), torch::kInt64)
                    .slice(0, 0, std::min(half, fp.size(0))).to(ctx.device);
      auto f = torch::cat({ft.index_select(0, it), fp.index_select(0, ip)});
      auto y = torch::cat({torch::full({it.size(0)}, t, yp.options()), yp.index_select(0, ip)});
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(logits(f), y);
      loss.backward();
      opt.step();
      loss_value = loss.item<double>();
      ctx.log.Scalar("label_probe/loss", loss_value, step + 1);
    }
    torch::NoGradGuard no_grad;
    a.head->weight[t].copy_(row);
    a.head->bias[t].copy_(bias);
    return {ctx.target, {{"final_loss", loss_value}}};
  }
};

}  // namespace

TB_REGISTER_METHOD(label_probe, LabelProbe, "Label probe (no source)",
                   "reference: linear probe of the new class on the frozen target");

}  // namespace tb
