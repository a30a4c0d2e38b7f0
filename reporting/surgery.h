// The surgery suite's own tables, from the run store (no torch): the training-depth table
// (epochs × method → transfer / preservation) and the claims table, which sets each figure the
// "Neural Network Surgery for Knowledge Transfer" report states beside our measurement of the
// same thing under each reading of the head, its random-source control and the label_probe
// reference, with a verdict.
//
//   tb::SurgeryTables t = tb::BuildSurgeryTables(store, "nightly", "mnist");
//   std::string md = tb::RenderSurgeryMarkdown(t);
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "reporting/report.h"
#include "store/run_store.h"

namespace tb {

struct DepthRow {
  std::string method;
  std::vector<Cell> transfer, preservation;  // one per epoch count
  int64_t alternatives = 0;                  // other configs of the method, not pooled into the row
};

struct ClaimRow {
  std::string claim;       // what the report says
  std::string report;      // its figure, as stated
  std::vector<std::string> readings;  // our "transfer / preservation" under head keep, copy_row, stitch_row
  std::string control;     // the controls (B random; concept random) under the verdict's head
  std::string probe;       // label_probe on the same pair
  std::string verdict;
};

struct SurgeryTables {
  std::string suite, dataset;
  std::vector<int64_t> epochs;
  std::vector<DepthRow> depth;
  std::vector<ClaimRow> claims;
};

// Every cell stands on the main table's config groups (GroupRuns): one per model pair, never a
// pool of configs that differ in more than the seed. Where several configs qualify for a cell,
// the one covering the most pairs stands (then the table's unnamed row, then the most runs) and
// the cell says so. `declared` is the main table's; its run-level options also tie each
// label_probe reference to the data of the reading it is set against.
SurgeryTables BuildSurgeryTables(RunStore& store, const std::string& suite, const std::string& dataset,
                                 const DeclaredOptions& declared);
std::string RenderSurgeryMarkdown(const SurgeryTables& tables);
std::string RenderClaimsCsv(const SurgeryTables& tables);
bool HasMeasurements(const SurgeryTables& tables);

// Every table of a suite's report, built once: what WriteSuiteReport writes and what the HTML
// report (reporting/html.h) shows, so the two always hold the same tables.
struct SuiteReport {
  Table main;                          // <name>.*: the surgery protocol's main table
  std::vector<SurgeryTables> surgery;  // per dataset with surgery measurements: training depth and claims
  std::vector<Table> protocols;        // the merge and continual tables with rows: <name>-<spec.protocol>.*
  std::optional<Table> zoo;            // the zoo grids the runs took their models from: <name>-zoo.*
};
SuiteReport BuildSuiteReport(RunStore& store, const std::string& suite, const DeclaredOptions& declared);

// The suite's Markdown report, one piece per renderer call in file order (the main table, each
// dataset's depth and claims, the merge, continual and zoo tables); <name>.md is their
// concatenation, each after the first preceded by a blank line.
std::vector<std::string> SuiteMarkdownSections(const SuiteReport& report);

// A suite's whole report: <dir>/<name>.{md,tex,csv} (the main table; the Markdown adds, per
// dataset with surgery runs, the training-depth and claims tables) and <name>-claims.csv.
// Returns the paths written. The HTML page is written by WriteHtmlReport (reporting/html.h),
// on request only: it needs the Vega runtime that scripts/fetch-vega fetches.
std::vector<std::string> WriteSuiteReport(RunStore& store, const std::string& suite, const std::string& dir,
                                          const std::string& name, const DeclaredOptions& declared);

}  // namespace tb
