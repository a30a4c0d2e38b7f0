// The command-line front ends: `transferbench` (run, nightly, suite, report, ls, show, list,
// reproduce) and the generic main every exp_<method> binary is built from. Both return the
// process exit code: 0 success, 2 bad input (one line naming the bad value), 1 a failure
// while running.
#pragma once

#include <string>

namespace tb {

int TransferbenchMain(int argc, char** argv);
int ExperimentMain(const std::string& method, int argc, char** argv);

}  // namespace tb
