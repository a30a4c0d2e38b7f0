// random_init (reference): the target trained from its own initialisation, with the same budget,
// batches and seed as every bootstrap method. Every method of the bootstrap protocol is compared
// with this row: a start from the source that does not beat it moved nothing.
#include "experiments/protocols/bootstrap.h"

namespace tb {
namespace {

class RandomInit : public MethodWithOptions<NoOptions, BootstrapMethod> {
 public:
  bool IsReference() const override { return true; }
  bool UsesSource() const override { return false; }
  MetricMap Initialise(BootstrapContext&) override { return {}; }
};

}  // namespace

TB_REGISTER_METHOD(random_init, RandomInit, "Random initialisation (reference)",
                   "the weight-transfer document's baseline: the target trained from scratch");

}  // namespace tb
