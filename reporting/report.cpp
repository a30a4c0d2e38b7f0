#include "reporting/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace {

// Keys that do not change what a run measures: where and how fast it ran.
const char* const kMachineKeys[] = {"threads", "device"};

// The config without the machine keys: two runs with equal identities measured the same thing.
std::string Identity(const RunRecord& run) {
  nlohmann::json c = run.config;
  for (const char* k : kMachineKeys) c.erase(k);
  return JsonHash(c);
}

std::string KeyValue(const RunRecord& run, const std::string& key) {
  if (key == "pair") return KeyValue(run, "arch_b") + " → " + KeyValue(run, "arch_a");
  if (key == "method") return run.method;
  if (!run.config.contains(key)) return "";
  const auto& v = run.config.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// A cell whose metric some runs of the row did not log says over how many runs it stands.
std::string FormatCell(const Cell& c, bool percent, bool latex, int64_t row_runs) {
  if (c.n == 0) return latex ? "--" : "–";
  const double scale = percent ? 100.0 : 1.0;
  const char* pm = latex ? " $\\pm$ " : " ± ";
  std::string out = c.n == 1 ? fmt::format("{:.1f}", c.mean * scale)
                             : fmt::format("{:.1f}{}{:.1f}", c.mean * scale, pm, c.std * scale);
  if (c.n < row_runs) out += latex ? fmt::format(" ($n{{=}}{}$)", c.n) : fmt::format(" (n={})", c.n);
  return out;
}

std::string LatexEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '_' || ch == '%' || ch == '&' || ch == '#' || ch == '$') out += '\\';
    out += ch;
  }
  // The arrow of the pair column.
  std::string arrow = "→";
  for (size_t pos; (pos = out.find(arrow)) != std::string::npos;) out.replace(pos, arrow.size(), "$\\rightarrow$");
  return out;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace

TableSpec NightlyTableSpec(const std::string& suite) {
  TableSpec s;
  s.title = fmt::format("TransferBench — suite {}", suite);
  s.suite = suite;
  s.group_keys = {"dataset", "pair", "method", "head", "source", "calibrate", "train.epochs"};
  s.group_headers = {"Dataset", "Model pair (source → target)", "Method", "Head", "Source", "Calibrate", "Epochs"};
  s.metrics = {{"transfer_rate", "Transfer %", true},
               {"preservation", "Preservation %", true},
               {"degradation", "Degradation (pts)", false},
               {"false_transfer", "False transfer %", true},
               {"joint_acc", "Joint acc %", true}};
  return s;
}

Cell Aggregate(const std::vector<double>& values) {
  Cell c;
  double sum = 0;
  for (double v : values) {
    if (std::isfinite(v)) {
      sum += v;
      ++c.n;
    }
  }
  if (c.n == 0) return c;
  c.mean = sum / static_cast<double>(c.n);
  if (c.n > 1) {
    double ss = 0;
    for (double v : values) {
      if (std::isfinite(v)) ss += (v - c.mean) * (v - c.mean);
    }
    c.std = std::sqrt(ss / static_cast<double>(c.n - 1));
  }
  return c;
}

std::vector<RunRecord> ReportRuns(RunStore& store, const std::string& suite) {
  RunFilter filter;
  if (!suite.empty()) filter.suite = suite;
  filter.status = RunStatus::kFinished;
  auto runs = store.ListRuns(filter);
  auto version = [](const RunRecord& r) { return r.config.value("runner_version", int64_t{0}); };
  int64_t newest = 0;
  for (const auto& r : runs) newest = std::max(newest, version(r));
  std::set<std::string> seen;  // ListRuns is newest first: keep the newest run of each identity
  std::vector<RunRecord> out;
  for (auto& r : runs) {
    if (version(r) == newest && seen.insert(Identity(r)).second) out.push_back(std::move(r));
  }
  return out;
}

namespace {

// The config a group of seeds shares: without the machine keys and the seed.
nlohmann::json GroupConfig(const RunRecord& run) {
  nlohmann::json c = run.config;
  for (const char* k : kMachineKeys) c.erase(k);
  c.erase("seed");
  return c;
}

// "key=value, ..." for the keys in which `config` differs from any of `others` (the configs
// that share its displayed columns).
std::string Variant(const nlohmann::json& config, const std::vector<nlohmann::json>& others) {
  std::set<std::string> keys;
  for (const auto& o : others) {
    for (const auto& [k, v] : config.items()) {
      if (!o.contains(k) || o.at(k) != v) keys.insert(k);
    }
    for (const auto& [k, v] : o.items()) {
      if (!config.contains(k)) keys.insert(k);
    }
  }
  std::string out;
  for (const auto& k : keys) {
    if (k == "dataset_sha256") continue;  // shown as data.dir or dataset already
    const std::string value = !config.contains(k) ? "–" : config.at(k).is_string() ? config.at(k).get<std::string>()
                                                                                      : config.at(k).dump();
    out += (out.empty() ? "" : ", ") + k + "=" + value;
  }
  return out;
}

}  // namespace

Table BuildTable(RunStore& store, const TableSpec& spec) {
  // Pass 1: runs by group (configs equal but for the seed), and the groups behind each set of
  // displayed keys.
  std::map<std::string, std::vector<RunRecord>> runs_of_group;
  std::map<std::string, nlohmann::json> config_of_group;
  std::map<std::vector<std::string>, std::vector<std::string>> groups_of_display;
  std::map<std::string, std::vector<std::string>> display_of_group;
  Table table;
  table.spec = spec;
  for (RunRecord& run : ReportRuns(store, spec.suite)) {
    std::vector<std::string> key;
    for (const auto& k : spec.group_keys) key.push_back(KeyValue(run, k));
    nlohmann::json config = GroupConfig(run);
    const std::string group = JsonHash(config);
    if (!runs_of_group.count(group)) {
      config_of_group[group] = std::move(config);
      groups_of_display[key].push_back(group);
      display_of_group[group] = key;
    }
    runs_of_group[group].push_back(std::move(run));
    ++table.runs;
  }
  // Pass 2: runs that differ in anything but the seed (a method option, the scenario, ...) are
  // never averaged together. Where several groups share the displayed keys, each row names what
  // sets it apart beside its method (or in its last column).
  const auto method_col = std::find(spec.group_keys.begin(), spec.group_keys.end(), "method");
  const size_t label_col = method_col != spec.group_keys.end()
                               ? static_cast<size_t>(method_col - spec.group_keys.begin())
                               : spec.group_keys.size() - 1;
  std::map<std::vector<std::string>, std::vector<std::map<std::string, double>>> groups;
  std::vector<std::vector<std::string>> order;
  for (const auto& [group, runs] : runs_of_group) {
    std::vector<std::string> key = display_of_group[group];
    const auto& siblings = groups_of_display[key];
    if (siblings.size() > 1 && !key.empty()) {
      std::vector<nlohmann::json> others;
      for (const auto& g : siblings) {
        if (g != group) others.push_back(config_of_group[g]);
      }
      std::string variant = Variant(config_of_group[group], others);
      if (variant.empty()) variant = group.substr(0, 8);
      key[label_col] += " (" + variant + ")";
    }
    if (groups.count(key)) key[label_col] += " [" + group.substr(0, 8) + "]";  // never merge two configs
    order.push_back(key);
    for (const auto& run : runs) groups[key].push_back(store.Summary(run.id));
  }
  std::sort(order.begin(), order.end());
  for (const auto& key : order) {
    TableRow row;
    row.keys = key;
    const auto& summaries = groups[key];
    row.runs = static_cast<int64_t>(summaries.size());
    for (const auto& m : spec.metrics) {
      std::vector<double> values;
      for (const auto& s : summaries) {
        auto it = s.find(m.key);
        values.push_back(it == s.end() ? std::nan("") : it->second);
      }
      row.cells.push_back(Aggregate(values));
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string RenderMarkdown(const Table& t) {
  std::string out = fmt::format("## {}\n\n", t.spec.title);
  std::string header = "|", rule = "|";
  for (const auto& h : t.spec.group_headers) {
    header += " " + h + " |";
    rule += "---|";
  }
  for (const auto& m : t.spec.metrics) {
    header += " " + m.header + " |";
    rule += "---:|";
  }
  header += " n |";
  rule += "---:|";
  out += header + "\n" + rule + "\n";
  for (const auto& row : t.rows) {
    std::string line = "|";
    for (const auto& k : row.keys) line += " " + (k.empty() ? std::string("–") : k) + " |";
    for (size_t i = 0; i < row.cells.size(); ++i) line += " " + FormatCell(row.cells[i], t.spec.metrics[i].percent, false, row.runs) + " |";
    line += fmt::format(" {} |", row.runs);
    out += line + "\n";
  }
  out += fmt::format("\n{} finished runs; mean ± sample standard deviation over seeds; n = runs per row (a cell that fewer of them logged gives its own n).\n", t.runs);
  return out;
}

std::string RenderLatex(const Table& t) {
  std::string cols(t.spec.group_headers.size(), 'l');
  cols += std::string(t.spec.metrics.size() + 1, 'r');
  std::string out = "% Generated by transferbench report; needs \\usepackage{booktabs}.\n";
  out += fmt::format("\\begin{{table}}[t]\n\\centering\n\\caption{{{}}}\n\\begin{{tabular}}{{{}}}\n\\toprule\n",
                     LatexEscape(t.spec.title), cols);
  std::string header;
  for (const auto& h : t.spec.group_headers) header += LatexEscape(h) + " & ";
  for (const auto& m : t.spec.metrics) header += LatexEscape(m.header) + " & ";
  out += header + "$n$ \\\\\n\\midrule\n";
  for (const auto& row : t.rows) {
    std::string line;
    for (const auto& k : row.keys) line += (k.empty() ? std::string("--") : LatexEscape(k)) + " & ";
    for (size_t i = 0; i < row.cells.size(); ++i) line += FormatCell(row.cells[i], t.spec.metrics[i].percent, true, row.runs) + " & ";
    out += line + fmt::format("{} \\\\\n", row.runs);
  }
  out += "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
  return out;
}

std::string RenderCsv(const Table& t) {
  std::string out;
  for (const auto& k : t.spec.group_keys) out += k + ",";
  for (const auto& m : t.spec.metrics) out += fmt::format("{0}_mean,{0}_std,{0}_n,", m.key);
  out += "runs\n";
  for (const auto& row : t.rows) {
    for (const auto& k : row.keys) out += CsvField(k) + ",";
    for (const auto& c : row.cells) {
      if (c.n == 0) {
        out += ",,0,";
      } else {
        out += fmt::format("{:.12g},{:.12g},{},", c.mean, c.std, c.n);
      }
    }
    out += fmt::format("{}\n", row.runs);
  }
  return out;
}

std::vector<std::string> WriteTable(const Table& table, const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::vector<std::string> paths;
  const std::pair<const char*, std::string> outputs[] = {
      {"md", RenderMarkdown(table)}, {"tex", RenderLatex(table)}, {"csv", RenderCsv(table)}};
  for (const auto& [ext, text] : outputs) {
    const std::string path = (fs::path(dir) / fmt::format("{}.{}", name, ext)).string();
    const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    {
      std::ofstream f(tmp, std::ios::binary);
      if (!f) throw BadInput(fmt::format("{}: cannot write report", tmp));
      f << text;
    }
    fs::rename(tmp, path);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace tb
