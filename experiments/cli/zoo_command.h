// `transferbench zoo build|ls|export GRID`: the zoo grids of experiments/zoos/ (zoo_grid.h).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace tb {

// Adds the `zoo` subcommand to `app`; its callbacks read `results` and set `code`.
void AddZooCommand(CLI::App& app, const std::string& results, int& code);

}  // namespace tb
