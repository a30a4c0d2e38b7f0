// finetune: train every weight of target A with Adam on the transfer classes' training data
// alone, for a set number of steps. The gradient baseline: it learns T quickly and, with no
// S_A data in its batches, shows catastrophic forgetting in its preservation. Batches are
// drawn in a fixed order (a portable permutation per pass over the data, seeded by the run).
// Options: steps, lr, batch_size.
#include <fmt/format.h>

#include "experiments/protocols/surgery.h"
#include "experiments/train/trainer.h"
#include "store/errors.h"

namespace tb {
namespace {

struct FinetuneOptions {
  int64_t steps = 100;
  double lr = 1e-3;
  int64_t batch_size = 64;
  void Bind(Options& o) {
    o.Add("steps", &steps, "optimizer steps on the transfer classes' training data");
    o.Add("lr", &lr, "Adam learning rate");
    o.Add("batch_size", &batch_size, "minibatch size");
  }
};

class Finetune : public MethodWithOptions<FinetuneOptions, SurgeryMethod> {
 public:
  bool SeveralTransferClasses() const override { return true; }
  void Check(const MethodCheck&) const override {
    RequireAtLeast("steps", static_cast<double>(opts().steps), 0);
    RequireAtLeast("batch_size", static_cast<double>(opts().batch_size), 1);
    if (!(opts().lr > 0)) throw BadInput(fmt::format("lr={}: expected > 0", opts().lr));
  }
  MethodResult Run(MethodContext& ctx) override {
    const auto& o = opts();
    const Split& data = ctx.data.transfer_train;
    if (data.size() == 0) throw BadInput("finetune: no training samples of the transfer classes");
    auto& model = *ctx.target;
    auto images = data.images.to(ctx.device);
    auto labels = data.labels.to(ctx.device);
    torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(o.lr));
    model.train();
    const int64_t n = data.size();
    std::vector<int64_t> order;
    size_t cursor = 0;
    uint64_t pass = 0;
    double loss = 0;
    for (int64_t step = 0; step < o.steps; ++step) {
      std::vector<int64_t> batch;
      while (static_cast<int64_t>(batch.size()) < std::min(o.batch_size, n)) {
        if (cursor == order.size()) {
          order = PortablePermutation(n, ctx.seed * 7919ULL + pass++);
          cursor = 0;
        }
        batch.push_back(order[cursor++]);
      }
      auto idx = torch::tensor(batch, torch::kInt64).to(ctx.device);
      loss = TrainStep(model, optimizer, images.index_select(0, idx), labels.index_select(0, idx)).first;
      ctx.log.Scalar("finetune/loss", loss, step + 1);
    }
    model.eval();
    return {ctx.target, {{"final_loss", loss}}};
  }
};

}  // namespace

TB_REGISTER_METHOD(finetune, Finetune, "Fine-tuning on the new classes",
                   "gradient baseline (catastrophic forgetting: McCloskey & Cohen 1989)");

}  // namespace tb
