// The command-line front ends: `transferbench` (run, nightly, suite, report, ls, show, list,
// reproduce) and the generic main every exp_<method> binary is built from. Both return the
// process exit code: 0 success, 2 bad input (one line naming the bad value), 1 a failure
// while running.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tb {

using Settings = std::vector<std::pair<std::string, nlohmann::json>>;  // as runner.h

int TransferbenchMain(int argc, char** argv);
// One run of `method`, as `transferbench run` does; `presets` go before the command line's
// settings (which override them), `title` and `extra_help` head the --help text.
int ExperimentMain(const std::string& method, int argc, char** argv, const Settings& presets = {},
                   const std::string& title = "", const std::string& extra_help = "");
// The multi-call main of bin/tb_exp: called as exp_<method>, one run of the method; as
// exp_loss_<loss>, the learned merger trained with that loss (LossExperimentDefaults).
int MultiCallMain(int argc, char** argv);
// exp_loss_<loss>'s defaults: the `merger` zoo grid at bin 11, the pair 1,7 + 3,8, loss=<loss>
// (left at the merger's default for a metric-only loss).
Settings LossExperimentDefaults(const std::string& loss);

}  // namespace tb
