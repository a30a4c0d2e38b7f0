// Every subcommand's error handling in one place: exceptions become one line on stderr and the
// exit code the README promises (2: bad input, 1: a failure while running); and the one way a
// command starts worker processes of itself.
//
//   code = tb::Guarded([&] { return DoRun(...); });
#pragma once

#include <sys/types.h>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "store/errors.h"

namespace tb {

// Runs `body`, turning exceptions into one line on stderr and an exit code.
template <class Body>
int Guarded(Body&& body) {
  try {
    return body();
  } catch (const BadInput& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const CLI::ParseError& e) {
    throw;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

// Starts this binary again (/proc/self/exe) with `args` (args[0] the program name) and the same
// environment: the zoo's and the suite's worker processes. Throws naming `what` if it cannot.
pid_t SpawnSelf(const std::vector<std::string>& args, const std::string& what);

}  // namespace tb
