// The HTML report: one self-contained page per suite, beside its md / tex / csv. It holds every
// table of the Markdown report (sortable: click a column's header) and the plots of the plot
// registry (reporting/plots.h) drawn by Vega-Lite through vega-embed as SVG. Everything is
// inline — the Vega runtime (read from the npm packages scripts/fetch-vega unpacks), the specs
// and their data — and the page's Content-Security-Policy allows no network at all, so it opens
// anywhere, offline, as one file. Every string from the store (run names, suites, tags, option
// and config values) reaches the page as text: HTML-escaped in tables, \u003c-escaped JSON in
// the specs, rendered by Vega as SVG text.
//
// The page checks itself: once every chart has settled it writes
// {"charts": [{"name", "marks"}], "errors": [...], "warnings": [...]} into the hidden
// <pre id="tb-check"> (marks: the SVG mark items each chart drew; errors: uncaught errors,
// console.error, failed embeds, policy violations, dialogs, injected images), which
// scripts/screenshot-report reads in headless Chromium.
//
//   tb::SuiteReport report = tb::BuildSuiteReport(store, "nightly", declared);
//   std::string page = tb::RenderHtmlReport(store, "nightly", report, declared);   // runtime from fetch-vega
//   std::string path = tb::WriteHtmlReport(store, "nightly", "results/reports", "nightly", declared);
#pragma once

#include <string>

#include "reporting/report.h"
#include "reporting/surgery.h"
#include "store/run_store.h"

namespace tb {

struct HtmlOptions {
  // The directory scripts/fetch-vega fills: vega.min.js, vega-lite.min.js, vega-embed.min.js,
  // versions.json. "" = DefaultVegaRuntimeDir().
  std::string runtime_dir;
};

// $TRANSFERBENCH_DATA/npm/vega-runtime, else <source>/results/data/npm/vega-runtime.
std::string DefaultVegaRuntimeDir();

// The page for `suite` ("" = every suite) from its tables (BuildSuiteReport) and the registry's
// plots. BadInput naming the file when the runtime is missing.
std::string RenderHtmlReport(RunStore& store, const std::string& suite, const SuiteReport& report,
                             const DeclaredOptions& declared, const HtmlOptions& options = {});

// Builds the suite's tables and writes <dir>/<name>.html (replaced whole, never half written);
// returns its path.
std::string WriteHtmlReport(RunStore& store, const std::string& suite, const std::string& dir, const std::string& name,
                            const DeclaredOptions& declared, const HtmlOptions& options = {});

// Text as HTML text or attribute value: & < > " ' as entities.
std::string HtmlEscape(const std::string& s);

// JSON for a <script> element: the dump with <, >, &, U+2028 and U+2029 as \u escapes (the same
// value to JSON.parse; nothing in it can end the element or start markup), invalid UTF-8 as U+FFFD.
std::string ScriptJson(const nlohmann::json& value);

}  // namespace tb
