#include "experiments/cli/guarded.h"

#include <spawn.h>

#include <stdexcept>

extern char** environ;

namespace tb {

pid_t SpawnSelf(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) {
    throw std::runtime_error("cannot start a " + what + " process");
  }
  return pid;
}

}  // namespace tb
