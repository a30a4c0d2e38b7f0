// `transferbench zoo build|ls|export GRID`: the zoo grids of experiments/zoos/ (zoo_grid.h).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace tb {

struct ZooGrid;

// Builds what is not built yet of `grid` in `results` with `jobs` worker processes of `threads`
// intra-op threads each (0: cores / jobs), printing a progress line (units/min, ETA) on stderr
// until they are done. Returns the exit code (0: every unit built). Also run by a suite whose
// runs name a zoo.grid, before them.
int BuildZooGrid(const ZooGrid& grid, const std::string& results, int64_t jobs, int64_t threads, const std::string& device);

// Adds the `zoo` subcommand to `app`; its callbacks read `results` and set `code`.
void AddZooCommand(CLI::App& app, const std::string& results, int& code);

}  // namespace tb
