// `transferbench loss NAME --a A.csv --b B.csv [--set k=v ...]`: one registered loss evaluated on
// two weight vectors given as one number per line (predicted, target), printed with 17
// significant digits, so a loss can be checked by hand against another implementation.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace tb {

// Adds the `loss` subcommand to `app`; its callback sets `code` (2: bad input).
void AddLossCommand(CLI::App& app, int& code);

}  // namespace tb
