#include "experiments/protocols/protocol.h"

namespace tb {

ProtocolRegistry& Protocols() {
  static ProtocolRegistry registry("protocol");
  return registry;
}

}  // namespace tb
