#include <fmt/format.h>

#include "experiments/methods/method.h"
#include "store/errors.h"

namespace tb {

void RequireAtLeast(const std::string& option, double value, double minimum) {
  if (!(value >= minimum)) throw BadInput(fmt::format("{}={}: expected at least {}", option, value, minimum));
}

MethodRegistry& Methods() {
  static MethodRegistry registry("method");
  return registry;
}

}  // namespace tb
