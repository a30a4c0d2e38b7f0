// Comparison tables from the run store: finished runs grouped by config keys, each metric as
// mean ± sample standard deviation over seeds, with the number of runs. Rendered as Markdown
// (pull requests), LaTeX booktabs (papers) and CSV (pandas). No torch.
//
//   tb::TableSpec spec = tb::NightlyTableSpec("nightly");
//   tb::Table t = tb::BuildTable(store, spec);
//   std::string md = tb::RenderMarkdown(t);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "store/run_store.h"

namespace tb {

struct MetricColumn {
  std::string key;      // summary key
  std::string header;   // column title
  bool percent = false; // fraction shown as a percentage in md/tex (CSV keeps the raw value)
  // The summary key whose direction (reporting/compare.h's rules) says which value of the
  // column is best, bold in LaTeX; "" = key. A pivot's columns all show one metric.
  std::string metric;
};

// The options' declared values, from the registries (the CLI fills it; reporting has no torch).
// A row is named by the options in which it differs from the rest; where the groups of a method
// split evenly on an option, the one at the declared value is the method as declared and stays
// unnamed. Empty: nothing is known to be the default, and an even split names every row.
struct DeclaredOptions {
  nlohmann::json run = nlohmann::json::object();  // the run-level options every protocol shares (seed, source, ...)
  std::map<std::string, nlohmann::json> scenario; // protocol → its scenario options (dataset, classes_a, train.*, ...)
  std::map<std::string, nlohmann::json> method;   // method → its own options
  std::map<std::string, std::string> protocol;    // method → the protocol it runs under
  // The run-level and scenario options of `protocol`'s runs, with their declared values.
  nlohmann::json RunLevel(const std::string& protocol) const;
  // The declared value of `key` for `method`, or null.
  nlohmann::json Default(const std::string& method, const std::string& key) const;
};

struct TableSpec {
  std::string title;
  std::string suite;                    // only runs of this suite ("" = every suite)
  std::vector<std::string> group_keys;  // config keys; "pair" is arch_b → arch_a
  std::vector<std::string> group_headers;
  std::vector<MetricColumn> metrics;
  DeclaredOptions declared;
  // Only the runs of this protocol's methods (from declared.protocol; a method it does not know
  // counts as surgery); "" = every run.
  std::string protocol;
  // Config keys pooled like the seed: a row's runs may differ in them (the merge table's
  // parent pairs, classes_1 and classes_2).
  std::vector<std::string> pooled_keys;
  // Only runs whose config has these values (key "method" the method, "pair" arch_b → arch_a),
  // compared as the tables show them. BadInput when no run has the key at all.
  std::vector<std::pair<std::string, std::string>> where;
  std::string note;  // a line under the Markdown table
  std::string footer;  // replaces the Markdown's line on runs and seeds (a table not of runs)
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
TableSpec NightlyTableSpec(const std::string& suite, DeclaredOptions declared = {});

// The merge protocol's table: dataset × method × parents' init × source, pooled over the
// parent pairs (classes_1, classes_2) and seeds.
TableSpec MergeTableSpec(const std::string& suite, DeclaredOptions declared = {});

// The continual protocol's table: dataset × method (merge_continual named by its merge) × task
// sequence × source.
TableSpec ContinualTableSpec(const std::string& suite, DeclaredOptions declared = {});
// The bootstrap protocol's table: per task, source → target pair, method and source control.
TableSpec BootstrapTableSpec(const std::string& suite, DeclaredOptions declared = {});

// The zoo table: the checkpoints of the named zoo grids in the store, by grid × activation ×
// init × epoch bin: test and validation accuracy on the model's own classes, the epoch training
// stopped at, the share stopped early; mean ± std over the grid's models (n = models).
Table BuildZooTable(RunStore& store, const std::vector<std::string>& grids);

// One config group: the runs whose configs differ in the seed alone (and where they ran).
struct RunGroup {
  std::string id;                  // hash of `config`
  std::string method;
  nlohmann::json config;           // the runs' config without the seed and the machine keys
  std::vector<std::string> keys;   // the displayed keys' values
  std::string variant;             // "key=value, ..." that sets it apart where the columns do not
  std::vector<RunRecord> runs;
};

// The report's runs (ReportRuns) in config groups, each with the label the table gives it.
// Ordered by displayed keys, then variant. Every table and claim stands on these groups.
std::vector<RunGroup> GroupRuns(RunStore& store, const TableSpec& spec);

// The runs a report of `suite` ("" = every suite) stands on, newest first: finished; measured by
// the newest code (the highest `runner_version` in their configs: older code's runs are
// superseded, not mixed in); and where one config (threads and device aside) finished more
// than once, only the newest.
std::vector<RunRecord> ReportRuns(RunStore& store, const std::string& suite);

// The run's config without the machine keys (threads, device): what it measured, not where.
nlohmann::json MeasuredConfig(const RunRecord& run);

// Runs are averaged only when their configs differ in the seed alone. The LaTeX is booktabs:
// mean ± std with the std in \scriptsize, the best value of each column in bold (where the
// metric has a direction), n in the caption, a longtable (breaking across pages) past
// kLatexLongRows rows, and a comment saying how to narrow a table wider than a page.
constexpr size_t kLatexLongRows = 30;
Table BuildTable(RunStore& store, const TableSpec& spec);

// The table papers use: one row per value of `rows` (with what else sets a config group apart,
// as every table names it), one column per value of `cols`, each cell the `value` metric of one
// config group — mean ± std over its seeds, never a pool of configs that differ in more than the
// seed. `base` gives the suite, protocol, declared options and `where`; its metrics are ignored.
// BadInput when a key is missing or no run logged `value`.
struct PivotSpec {
  std::vector<std::string> rows;  // config keys, "method" or "pair"
  std::string cols;
  std::string value;  // a summary key
};
// Rows that name neither the method nor take it as columns get it as their first key.
Table BuildPivot(RunStore& store, TableSpec base, PivotSpec pivot);

// "rows=method,cols=pair,value=transfer_rate" (rows may name several keys joined by '+').
PivotSpec ParsePivot(const std::string& text);
// "key=value,key=value" for TableSpec::where.
std::vector<std::pair<std::string, std::string>> ParseWhere(const std::string& text);
// Keeps only the metric columns named (in the order given); BadInput naming an unknown one and
// listing the table's columns.
void SelectColumns(TableSpec& spec, const std::vector<std::string>& keys);

// The LaTeX table's width in points, estimated from its longest cell per column (about 5 pt a
// character at 10 pt type, plus the column separation): above kLatexTextWidthPt it runs off a
// portrait page, and RenderLatex says how to narrow it.
constexpr double kLatexTextWidthPt = 345;  // article's \textwidth at 10 pt on A4/letter
double LatexWidthPt(const Table& table);

std::string RenderMarkdown(const Table& table);
std::string RenderLatex(const Table& table);
std::string RenderCsv(const Table& table);

// One field or cell, escaped: CSV quotes a field with a comma, quote or line break (RFC 4180);
// Markdown escapes '|' and turns line breaks into spaces, which would end the table row.
std::string CsvField(const std::string& s);
std::string MarkdownCell(const std::string& s);

// Mean and sample standard deviation of the finite values.
Cell Aggregate(const std::vector<double>& values);

// Writes <dir>/<name>.{md,tex,csv}; returns the three paths.
std::vector<std::string> WriteTable(const Table& table, const std::string& dir, const std::string& name);

}  // namespace tb
