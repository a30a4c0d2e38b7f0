#include "experiments/methods/method.h"

namespace tb {

MethodRegistry& Methods() {
  static MethodRegistry registry("method");
  return registry;
}

}  // namespace tb
