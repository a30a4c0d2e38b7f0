// Comparison tables from the run store: finished runs grouped by config keys, each metric as
// mean ± sample standard deviation over seeds, with the number of runs. Rendered as Markdown
// (pull requests), LaTeX booktabs (papers) and CSV (pandas). No torch.
//
//   tb::TableSpec spec = tb::NightlyTableSpec("nightly");
//   tb::Table t = tb::BuildTable(store, spec);
//   std::string md = tb::RenderMarkdown(t);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/run_store.h"

namespace tb {

struct MetricColumn {
  std::string key;      // summary key
  std::string header;   // column title
  bool percent = false; // fraction shown as a percentage in md/tex (CSV keeps the raw value)
};

struct TableSpec {
  std::string title;
  std::string suite;                    // only runs of this suite ("" = every suite)
  std::vector<std::string> group_keys;  // config keys; "pair" is arch_b → arch_a
  std::vector<std::string> group_headers;
  std::vector<MetricColumn> metrics;
};

struct Cell {
  double mean = 0;
  double std = 0;  // sample standard deviation (n - 1); 0 when n == 1
  int64_t n = 0;   // runs with a finite value
};

struct TableRow {
  std::vector<std::string> keys;
  std::string variant;  // "key=value, ..." when options outside the columns set this row apart
  std::vector<Cell> cells;
  int64_t runs = 0;
};

struct Table {
  TableSpec spec;
  std::vector<TableRow> rows;
  int64_t runs = 0;  // finished runs that went into the table
};

// A suite's main table: one row per dataset × model pair × method × head × source × calibrate ×
// epochs (an option a method does not have shows as –).
TableSpec NightlyTableSpec(const std::string& suite);

// The runs a report of `suite` ("" = every suite) stands on, newest first: finished; measured by
// the newest code (the highest `runner_version` in their configs: older code's runs are
// superseded, not mixed in); and where one config (threads and device aside) finished more
// than once, only the newest.
std::vector<RunRecord> ReportRuns(RunStore& store, const std::string& suite);

// Runs are averaged only when their configs differ in the seed alone.
Table BuildTable(RunStore& store, const TableSpec& spec);

std::string RenderMarkdown(const Table& table);
std::string RenderLatex(const Table& table);
std::string RenderCsv(const Table& table);

// Mean and sample standard deviation of the finite values.
Cell Aggregate(const std::vector<double>& values);

// Writes <dir>/<name>.{md,tex,csv}; returns the three paths.
std::vector<std::string> WriteTable(const Table& table, const std::string& dir, const std::string& name);

}  // namespace tb
