#include <fmt/format.h>

#include "experiments/methods/method.h"
#include "store/errors.h"

namespace tb {

void RequireEqualWidths(const std::string& what, const MethodCheck& c) {
  if (c.target_width != c.source_width) {
    throw BadInput(fmt::format("{}: target {} has {} penultimate features and source {} has {}; {}", what,
                               c.target.arch, c.target_width, c.source.arch, c.source_width,
                               "copying a head row needs equal widths (use a stitch or a cross-architecture method)"));
  }
}

void RequireAtLeast(const std::string& option, double value, double minimum) {
  if (!(value >= minimum)) throw BadInput(fmt::format("{}={}: expected at least {}", option, value, minimum));
}

MethodRegistry& Methods() {
  static MethodRegistry registry("method");
  return registry;
}

}  // namespace tb
