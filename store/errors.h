// Error types shared by every layer. The command-line front end turns a BadInput into one
// line on stderr and exit code 2; any other exception into one line and exit code 1.
//
//   throw tb::BadInput(fmt::format("--set seed={}: expected an integer", v));
#pragma once

#include <stdexcept>
#include <string>

namespace tb {

// The user asked for something that cannot be done as stated: a bad option value, an
// unknown name, a malformed file. The message names the bad value and what was expected.
class BadInput : public std::runtime_error {
 public:
  explicit BadInput(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace tb
