#include "experiments/losses/loss.h"

namespace tb {

LossRegistry& Losses() {
  static LossRegistry registry("loss");
  return registry;
}

}  // namespace tb
