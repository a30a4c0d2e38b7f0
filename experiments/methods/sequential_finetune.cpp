// sequential_finetune (continual): the naive step operator, fine-tuning the current model on the
// new task's data alone with the scenario's training options. It forgets: the lower reference.
#include <fmt/format.h>

#include "experiments/protocols/continual.h"

namespace tb {
namespace {

class SequentialFinetune : public MethodWithOptions<NoOptions, ContinualMethod> {
 public:
  ModelPtr Step(ContinualStep& s) override {
    Train(*s.current, s.data.train_2, s.data.val_2, s.train, s.seed, &s.log, fmt::format("task{}/", s.k));
    return s.current;
  }
};

}  // namespace

TB_REGISTER_METHOD(sequential_finetune, SequentialFinetune, "Sequential fine-tuning (continual, naive)",
                   "class-incremental baseline");

}  // namespace tb
