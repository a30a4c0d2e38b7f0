// The report's plots: one registry of Vega-Lite charts built from the run store (no torch).
// Each entry names a plot, says which protocol's runs it draws and when it appears, and builds
// one self-contained Vega-Lite v6 spec per dataset it applies to, the data inline as "values"
// (never a URL), so the same JSON opens in the HTML report (reporting/html.h), in the Vega
// editor, or as a W&B custom chart (W&B panels speak Vega-Lite too).
//
//   tb::SuiteReport report = tb::BuildSuiteReport(store, "nightly", declared);
//   for (const tb::Plot& p : tb::BuildPlots({store, "nightly", declared, report})) std::cout << p.spec.dump();
//
// A protocol adds its plot in one place: an entry in PlotRegistry() (plots.cpp) and the
// function it names.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reporting/report.h"
#include "reporting/surgery.h"
#include "store/run_store.h"

namespace tb {

inline constexpr char kVegaLiteSchema[] = "https://vega.github.io/schema/vega-lite/v6.json";

struct Plot {
  std::string name;     // "<entry>/<dataset>", e.g. "training-depth/mnist"
  std::string title;    // also the spec's own title
  std::string caption;  // what the marks are, for the page under the chart
  nlohmann::json spec;  // Vega-Lite v6, data inline
};

// What a plot is built from: the store and the suite's tables, built once for the whole page.
struct PlotInput {
  RunStore& store;
  std::string suite;  // "" = every suite
  const DeclaredOptions& declared;
  const SuiteReport& report;
};

struct PlotEntry {
  std::string name;  // the plots' name prefix
  std::string title;
  std::string protocol;  // the protocol whose runs it draws
  std::string applies;   // when it appears, in words
  // One plot per dataset it applies to; none where the suite has no such runs.
  std::function<std::vector<Plot>(const PlotInput&)> build;
};

// Every plot of the report, in page order.
const std::vector<PlotEntry>& PlotRegistry();

// The registry's plots for this suite, in registry order.
std::vector<Plot> BuildPlots(const PlotInput& input);

}  // namespace tb
