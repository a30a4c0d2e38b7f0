#include "reporting/report.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "reporting/compare.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace {

// Keys that do not change what a run measures: where and how fast it ran.
const char* const kMachineKeys[] = {"threads", "device"};

}  // namespace

nlohmann::json MeasuredConfig(const RunRecord& run) {
  nlohmann::json c = run.config;
  for (const char* k : kMachineKeys) c.erase(k);
  return c;
}

namespace {

// Two runs with equal identities measured the same thing.
std::string Identity(const RunRecord& run) { return JsonHash(MeasuredConfig(run)); }

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
  // Percentages and values of 1 or more to one decimal; smaller raw values (a weight MSE of
  // 0.0022) to three significant digits, which one decimal would show as 0.0.
  auto number = [&](double v) {
    return percent || v == 0 || std::abs(c.mean) >= 1 ? fmt::format("{:.1f}", v * scale) : fmt::format("{:.3g}", v);
  };
  std::string out = c.n == 1 ? number(c.mean) : fmt::format("{}{}{}", number(c.mean), pm, number(c.std));
  if (c.n < row_runs) out += latex ? fmt::format(" ($n{{=}}{}$)", c.n) : fmt::format(" (n={})", c.n);
  return out;
}

// LaTeX's specials escaped; the few non-ASCII characters the tables use (arrows, dashes, ±) as
// plain LaTeX, Latin-1 letters kept (LaTeX reads UTF-8 since 2018), anything else as "?", so
// the table compiles under pdflatex with no package but booktabs.
std::string LatexEscape(const std::string& s) {
  static const std::map<uint32_t, std::string> kMapped = {
      {0x2192, "$\\rightarrow$"}, {0x2014, "---"}, {0x2013, "--"}, {0x00B1, "$\\pm$"}, {0x2265, "$\\geq$"},
      {0x2264, "$\\leq$"}, {0x00D7, "$\\times$"}, {0x00B7, "$\\cdot$"}, {0x2212, "$-$"}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto ch = static_cast<unsigned char>(s[i]);
    if (ch < 0x80) {
      switch (ch) {
        case '_': case '%': case '&': case '#': case '$': case '{': case '}':
          out += '\\';
          out += static_cast<char>(ch);
          break;
        case '~': out += "\\textasciitilde{}"; break;
        case '^': out += "\\textasciicircum{}"; break;
        case '\\': out += "\\textbackslash{}"; break;
        case '|': out += "\\textbar{}"; break;
        case '<': out += "\\textless{}"; break;
        case '>': out += "\\textgreater{}"; break;
        case '\r': case '\n': case '\t': out += ' '; break;
        default: out += static_cast<char>(ch);
      }
      ++i;
      continue;
    }
    // One UTF-8 sequence: its length from the lead byte, its code point from the rest.
    const size_t len = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
    uint32_t cp = len == 1 ? 0xFFFD : ch & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      const auto cont = i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0;
      cp = (cont & 0xC0) == 0x80 ? (cp << 6) | (cont & 0x3F) : 0xFFFD;
    }
    if (auto it = kMapped.find(cp); it != kMapped.end()) {
      out += it->second;
    } else if (cp >= 0xC0 && cp <= 0xFF && cp != 0xD7 && cp != 0xF7) {
      out.append(s, i, len);  // Latin-1 letters: LaTeX's own UTF-8 input handles them
    } else {
      out += '?';
    }
    i += std::min(len, s.size() - i);
  }
  return out;
}

}  // namespace

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::string MarkdownCell(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|') {
      out += "\\|";
    } else if (ch == '\n' || ch == '\r') {
      out += ' ';  // a line break ends the table row
    } else {
      out += ch;
    }
  }
  return out;
}

namespace {

}  // namespace

TableSpec NightlyTableSpec(const std::string& suite, DeclaredOptions declared) {
  TableSpec s;
  s.declared = std::move(declared);
  s.title = fmt::format("TransferBench — suite {}", suite);
  s.suite = suite;
  s.group_keys = {"dataset", "pair", "method", "head", "source", "calibrate", "train.epochs"};
  s.group_headers = {"Dataset", "Model pair (source → target)", "Method", "Head", "Source", "Calibrate", "Epochs"};
  s.protocol = "surgery";
  s.metrics = {{"transfer_rate", "Transfer %", true},
               {"preservation", "Preservation %", true},
               {"degradation", "Degradation (pts)", false},
               {"false_transfer", "False transfer %", true},
               {"joint_acc", "Joint acc %", true}};
  return s;
}

TableSpec MergeTableSpec(const std::string& suite, DeclaredOptions declared) {
  TableSpec s;
  s.declared = std::move(declared);
  s.title = fmt::format("TransferBench — suite {}: merging (C1 ∪ C2 from parents on C1 and on C2)", suite);
  s.suite = suite;
  s.protocol = "merge";
  s.group_keys = {"dataset", "method", "parents_init", "source"};
  s.group_headers = {"Dataset", "Method", "Parents' init", "Source"};
  s.pooled_keys = {"classes_1", "classes_2"};
  s.metrics = {{"iid_acc", "IID ep0 %", true},
               {"iid_acc_ft1", "IID ep1 %", true},
               {"iid_acc_ft2", "IID ep2 %", true},
               {"iid_acc_ft5", "IID ep5 %", true},
               {"ood_acc", "OOD %", true},
               {"shift_acc", "Shift %", true},
               {"normalized_acc", "Normalized %", true},
               {"joint_acc", "Joint %", true},
               {"per_task_acc", "Per-task %", true},
               {"collapse", "Collapse %", true},
               {"catchup_parents", "Catch-up parents (steps)", false},
               {"catchup_parents_reached", "reached %", true},
               {"catchup_union", "Catch-up union (steps)", false},
               {"catchup_union_reached", "reached %", true},
               {"stability", "Stability (max drop) %", true},
               {"barrier_rebasin", "Barrier (Re-Basin)", false},
               {"union_weight_mse", "Weight MSE to union", false}};
  s.note = "IID: 10-way top-1 on the test images of C1 ∪ C2 after 0/1/2/5 fine-tuning epochs; OOD: on the classes "
           "outside C1 ∪ C2 (near 0 for a model that never saw them); Shift: C1 ∪ C2 rotated by shift.degrees; "
           "catch-up: steps until IID reaches the parents' mean accuracy on their own classes / comes within 2 points "
           "of union_retrain, over the runs that reached it (reached: how often). union_retrain, ensemble and "
           "init_control are references; the ensemble is not one model and is not fine-tuned. Weight MSE to union: mean "
           "squared difference of the merged weights (before fine-tuning) from the union model's; zoo_mean (the mean "
           "of a learned merger's training targets) is the reference a learned merger must beat.";
  return s;
}

TableSpec ContinualTableSpec(const std::string& suite, DeclaredOptions declared) {
  TableSpec s;
  s.declared = std::move(declared);
  s.title = fmt::format("TransferBench — suite {}: continual learning (class-incremental)", suite);
  s.suite = suite;
  s.protocol = "continual";
  s.group_keys = {"dataset", "method", "merge", "tasks", "source"};
  s.group_headers = {"Dataset", "Method", "Merge", "Tasks", "Source"};
  s.metrics = {{"avg_acc", "Avg acc %", true},
               {"forgetting_max", "Forgetting (max) %", true},
               {"forgetting_first", "Forgetting (first) %", true},
               {"bwt", "BWT %", true},
               {"fwt", "FWT %", true},
               {"avg_acc_task", "Task-aware avg acc %", true},
               {"forgetting_max_task", "Task-aware forgetting %", true},
               {"fwt_task", "Task-aware FWT %", true}};
  s.note = "Accuracy after the last task, over every task (10-way head). With one 10-way head FWT is negative by "
           "construction: a task not yet seen scores about 0 while the random-init model scores near chance on it. "
           "The task-aware columns take the argmax within each task's own classes (Mammoth's task-IL setting), where "
           "real forward transfer can show.";
  return s;
}

TableSpec BootstrapTableSpec(const std::string& suite, DeclaredOptions declared) {
  TableSpec s;
  s.declared = std::move(declared);
  s.title = fmt::format("TransferBench — suite {}: bootstrapping a target architecture from a trained source", suite);
  s.suite = suite;
  s.protocol = "bootstrap";
  s.group_keys = {"dataset", "pair", "method", "source"};
  s.group_headers = {"Task", "Source → target", "Method", "Source"};
  s.metrics = {{"step0", "Step-0 acc %", true},
               {"steps_to_target", "Steps to target", false},
               {"target_reached", "reached %", true},
               {"aulc", "AULC %", true},
               {"final", "Final %", true},
               {"speedup", "Speed-up ×", false},
               {"dead_capacity", "Dead capacity %", true},
               {"random_init/aulc", "Random-init AULC %", true},
               {"step0_bpc", "Step-0 bits/char", false},
               {"aulc_bpc", "AULC bits/char", false},
               {"final_bpc", "Final bits/char", false},
               {"random_init/aulc_bpc", "Random-init AULC bits/char", false}};
  s.note = "Image tasks: accuracy on the task's test images (10-way); text tasks (fortunes, text): bits per character on "
           "the test split (lower is better; steps to target: to target_ratio, 1.1, x the source's), in the bits/char "
           "columns. Both as the target trains for the step budget after the method's "
           "initialisation. Steps to target: the first evaluated step at target_fraction (default 0.9) of the source's "
           "accuracy, over the runs that reached it (reached: how often); speed-up likewise. Speed-up: random init's steps over the method's, paired by seed (a "
           "lower bound where random init never got there or the method was there at step 0). Dead capacity: the share "
           "of the target's parameters that training never changed. random_init is the reference every row is "
           "compared with; source=shuffled keeps the source's weights, permuted within each tensor, and source=random "
           "a fresh source: what survives them is not transfer.";
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

// The config a group of seeds shares: without the machine keys, the seed and the pooled keys.
nlohmann::json GroupConfig(const RunRecord& run, const TableSpec& spec) {
  nlohmann::json c = MeasuredConfig(run);
  c.erase("seed");
  for (const auto& k : spec.pooled_keys) c.erase(k);
  return c;
}

bool OfProtocol(const RunRecord& run, const TableSpec& spec) {
  if (spec.protocol.empty()) return true;
  const auto it = spec.declared.protocol.find(run.method);
  return (it == spec.declared.protocol.end() ? std::string("surgery") : it->second) == spec.protocol;
}

std::string ConfigValue(const nlohmann::json& config, const std::string& key) {
  if (!config.contains(key)) return "–";
  const auto& v = config.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// The config keys a table shows in its columns ("pair" stands for arch_b and arch_a).
std::set<std::string> DisplayedKeys(const TableSpec& spec) {
  std::set<std::string> keys(spec.group_keys.begin(), spec.group_keys.end());
  if (keys.count("pair")) keys.insert({"arch_a", "arch_b"});
  keys.insert("dataset_sha256");  // follows the dataset (or data.dir)
  return keys;
}

// The displayed keys of a row, its variant beside the method (or in the last column).
std::vector<std::string> Labelled(const TableSpec& spec, const TableRow& row) {
  std::vector<std::string> keys = row.keys;
  if (row.variant.empty() || keys.empty()) return keys;
  const auto it = std::find(spec.group_keys.begin(), spec.group_keys.end(), "method");
  const size_t col = it != spec.group_keys.end() ? static_cast<size_t>(it - spec.group_keys.begin()) : keys.size() - 1;
  keys[col] += " (" + row.variant + ")";
  return keys;
}

}  // namespace

nlohmann::json DeclaredOptions::RunLevel(const std::string& protocol) const {
  nlohmann::json all = run;
  if (auto s = scenario.find(protocol); s != scenario.end()) {
    for (const auto& [k, v] : s->second.items()) all[k] = v;
  }
  return all;
}

nlohmann::json DeclaredOptions::Default(const std::string& method, const std::string& key) const {
  if (auto m = this->method.find(method); m != this->method.end() && m->second.contains(key)) return m->second.at(key);
  const auto p = protocol.find(method);
  const nlohmann::json level = RunLevel(p == protocol.end() ? "" : p->second);
  return level.contains(key) ? level.at(key) : nlohmann::json();
}

std::vector<RunGroup> GroupRuns(RunStore& store, const TableSpec& spec) {
  // Pass 1: runs by group (configs equal but for the seed), and the groups behind each set of
  // displayed keys.
  std::map<std::string, RunGroup> groups;
  std::map<std::vector<std::string>, std::vector<std::string>> groups_of_display;
  std::set<std::string> where_seen;  // `where` keys some run of the protocol has
  for (RunRecord& run : ReportRuns(store, spec.suite)) {
    if (!OfProtocol(run, spec)) continue;
    bool kept = true;
    for (const auto& [key, value] : spec.where) {
      const std::string v = KeyValue(run, key);
      if (key == "method" || key == "pair" || run.config.contains(key)) where_seen.insert(key);
      kept = kept && v == value;
    }
    if (!kept) continue;
    nlohmann::json config = GroupConfig(run, spec);
    config["method"] = run.method;
    const std::string id = JsonHash(config);
    auto [it, fresh] = groups.try_emplace(id);
    RunGroup& g = it->second;
    if (fresh) {
      g.id = id;
      g.method = run.method;
      for (const auto& k : spec.group_keys) g.keys.push_back(KeyValue(run, k));
      g.config = std::move(config);
      groups_of_display[g.keys].push_back(id);
    }
    g.runs.push_back(std::move(run));
  }
  for (const auto& [key, value] : spec.where) {
    if (!where_seen.count(key)) {
      throw BadInput(fmt::format("--where {}={}: no run of the table has the option '{}' (expected a config key, "
                                 "method or pair)", key, value, key));
    }
  }
  if (!spec.where.empty() && groups.empty()) {
    // A filter that matches nothing is a typo far more often than an empty night: say what is there.
    const auto& [key, value] = spec.where.front();
    std::set<std::string> seen;
    for (const RunRecord& run : ReportRuns(store, spec.suite)) {
      if (OfProtocol(run, spec) && seen.size() < 12) seen.insert(KeyValue(run, key));
    }
    throw BadInput(fmt::format("--where {}={}: no run matches (values of {} here: {})", key, value, key,
                               fmt::join(seen, ", ")));
  }
  // Pass 2: runs that differ in anything but the seed are never averaged together, and a row
  // says what sets it apart where the columns do not: the options (not shown in a column) whose
  // value differs from the most common one among the groups of its method (a control such as
  // concept_source=random). Where the groups split evenly, the declared value is the reference;
  // failing that there is none, and every row names the option.
  const std::set<std::string> displayed = DisplayedKeys(spec);
  std::map<std::string, std::map<std::string, std::map<std::string, int>>> counts;  // method → key → value → groups
  for (const auto& [id, g] : groups) {
    for (const auto& [k, v] : g.config.items()) {
      if (!displayed.count(k) && k != "method") ++counts[g.method][k][ConfigValue(g.config, k)];
    }
  }
  std::map<std::pair<std::string, std::string>, std::optional<std::string>> reference;  // (method, key) → value
  for (const auto& [method, keys] : counts) {
    for (const auto& [key, values] : keys) {
      int most = 0;
      for (const auto& [value, n] : values) most = std::max(most, n);
      std::vector<std::string> tied;
      for (const auto& [value, n] : values) {
        if (n == most) tied.push_back(value);
      }
      std::optional<std::string> ref;
      if (tied.size() == 1) {
        ref = tied.front();
      } else if (const nlohmann::json d = spec.declared.Default(method, key); !d.is_null()) {
        const std::string declared = d.is_string() ? d.get<std::string>() : d.dump();
        if (std::find(tied.begin(), tied.end(), declared) != tied.end()) ref = declared;
      }
      reference[{method, key}] = ref;
    }
  }
  std::map<std::string, std::set<std::string>> differing;  // group → keys that set it apart
  for (const auto& [id, g] : groups) {
    auto& keys = differing[id];
    for (const auto& [k, v] : g.config.items()) {
      if (displayed.count(k) || k == "method") continue;
      const auto& ref = reference[{g.method, k}];
      if (!ref || ConfigValue(g.config, k) != *ref) keys.insert(k);
    }
  }
  // Groups behind the same columns that the reference values cannot tell apart name every key
  // in which they differ.
  for (const auto& [key, siblings] : groups_of_display) {
    std::vector<std::string> unnamed;
    for (const auto& g : siblings) {
      if (differing[g].empty()) unnamed.push_back(g);
    }
    if (unnamed.size() < 2) continue;
    for (const auto& g : unnamed) {
      const auto& config = groups[g].config;
      for (const auto& o : unnamed) {
        if (o == g) continue;
        const auto& other = groups[o].config;
        for (const auto& [k, v] : config.items()) {
          if (!displayed.count(k) && (!other.contains(k) || other.at(k) != v)) differing[g].insert(k);
        }
        for (const auto& [k, v] : other.items()) {
          if (!displayed.count(k) && !config.contains(k)) differing[g].insert(k);
        }
      }
    }
  }
  // A digest (the data's SHA-256, the zoo grid's model key) names a row only where nothing
  // readable does: beside zoo.grid=merger, zoo_grid_models=98a2…(64 digits) says nothing more.
  auto digest = [](const nlohmann::json& v) {
    if (!v.is_string()) return false;
    const auto& s = v.get_ref<const std::string&>();
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  };
  for (auto& [id, keys] : differing) {
    const auto& config = groups[id].config;
    auto is_digest = [&](const std::string& k) { return config.contains(k) && digest(config.at(k)); };
    if (std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return !is_digest(k); })) {
      for (auto it = keys.begin(); it != keys.end();) it = is_digest(*it) ? keys.erase(it) : std::next(it);
    }
  }
  std::set<std::pair<std::vector<std::string>, std::string>> labels;
  std::vector<RunGroup> out;
  for (auto& [id, g] : groups) {
    for (const auto& k : differing[id]) g.variant += (g.variant.empty() ? "" : ", ") + k + "=" + ConfigValue(g.config, k);
    if (!labels.insert({g.keys, g.variant}).second) g.variant += (g.variant.empty() ? "#" : " #") + id.substr(0, 8);
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const RunGroup& a, const RunGroup& b) {
    return std::tie(a.keys, a.variant) < std::tie(b.keys, b.variant);
  });
  return out;
}

Table BuildTable(RunStore& store, const TableSpec& spec) {
  Table table;
  table.spec = spec;
  for (const RunGroup& g : GroupRuns(store, spec)) {
    TableRow row;
    row.keys = g.keys;
    row.variant = g.variant;
    row.runs = static_cast<int64_t>(g.runs.size());
    std::vector<std::map<std::string, double>> summaries;
    for (const auto& run : g.runs) summaries.push_back(store.Summary(run.id));
    for (const auto& m : spec.metrics) {
      std::vector<double> values;
      for (const auto& s : summaries) {
        auto it = s.find(m.key);
        values.push_back(it == s.end() ? std::nan("") : it->second);
      }
      row.cells.push_back(Aggregate(values));
    }
    table.runs += row.runs;
    table.rows.push_back(std::move(row));
  }
  return table;
}

Table BuildZooTable(RunStore& store, const std::vector<std::string>& grids) {
  Table t;
  t.spec.title = "Zoo: accuracy by activation × init × epoch bin";
  t.spec.group_keys = {"grid", "activation", "init", "bin"};
  t.spec.group_headers = {"zoo grid", "activation", "init", "epoch bin"};
  t.spec.metrics = {{"test_acc", "test acc", true}, {"val_acc", "val acc", true}, {"epoch", "stopped at epoch", false},
                    {"early_stopped", "stopped early", true}};
  for (const auto& grid : grids) {
    // One model per checkpoint: of a unit built more than once (another thread count, device or
    // BLAS), the first build; the grid's settings (an edited grid file) set rows apart.
    auto settings = [](const nlohmann::json& spec) {
      nlohmann::json k;
      for (const char* key : {"dataset_sha256", "arch", "train", "train_per_class", "checkpoints", "trainer_version"}) {
        k[key] = spec.value(key, nlohmann::json());
      }
      return JsonHash(k).substr(0, 8);
    };
    std::map<std::string, std::pair<double, ModelRecord>> first;  // model key → (time, record)
    std::set<std::string> versions;
    for (auto& r : store.ModelsOfGrid(grid)) {
      if (r.spec.value("kind", "") != "zoo_grid_checkpoint") continue;
      const std::string version = settings(r.spec);
      versions.insert(version);
      const std::string key = version + r.spec.at("classes").dump() + r.spec.at("activation").dump() + r.spec.at("init").dump() +
                              r.spec.at("seed").dump() + r.spec.at("bin").dump();
      auto [it, fresh] = first.try_emplace(key, r.created_at, r);
      if (!fresh && r.created_at < it->second.first) it->second = {r.created_at, r};
    }
    std::map<std::tuple<std::string, std::string, std::string, int64_t>, std::vector<std::vector<double>>> cells;
    for (const auto& [key, entry] : first) {
      const ModelRecord& r = entry.second;
      const std::string name = versions.size() > 1 ? fmt::format("{} (settings {})", grid, settings(r.spec)) : grid;
      auto& values = cells[{name, r.spec.at("activation").get<std::string>(), r.spec.at("init").get<std::string>(),
                            r.spec.at("bin").get<int64_t>()}];
      values.resize(t.spec.metrics.size());
      values[0].push_back(r.metrics.value("test_acc", NAN));
      values[1].push_back(r.metrics.value("val_acc", NAN));
      values[2].push_back(r.metrics.value("epoch", NAN));
      values[3].push_back(r.metrics.value("early_stopped", false) ? 1.0 : 0.0);
    }
    for (const auto& [key, values] : cells) {
      const auto& [name, activation, init, bin] = key;
      TableRow row;
      row.keys = {name, activation, init, std::to_string(bin)};
      for (const auto& v : values) row.cells.push_back(Aggregate(v));
      row.runs = static_cast<int64_t>(values[0].size());
      t.runs += row.runs;
      t.rows.push_back(std::move(row));
    }
  }
  t.spec.footer = fmt::format("{} zoo checkpoints; mean ± sample standard deviation over the models of a row (n). A model that "
                              "stopped early is filed under the closest earlier bin; accuracy is on its own classes' test images.",
                              t.runs);
  return t;
}

std::string RenderMarkdown(const Table& t) {
  std::string out = fmt::format("## {}\n\n", MarkdownCell(t.spec.title));
  std::string header = "|", rule = "|";
  for (const auto& h : t.spec.group_headers) {
    header += " " + MarkdownCell(h) + " |";
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
    for (const auto& k : Labelled(t.spec, row)) line += " " + (k.empty() ? std::string("–") : MarkdownCell(k)) + " |";
    for (size_t i = 0; i < row.cells.size(); ++i) line += " " + FormatCell(row.cells[i], t.spec.metrics[i].percent, false, row.runs) + " |";
    line += fmt::format(" {} |", row.runs);
    out += line + "\n";
  }
  std::string over = "seeds";
  for (const auto& k : t.spec.pooled_keys) over += ", " + k;
  if (t.spec.footer.empty()) {
    out += fmt::format("\n{} finished runs; mean ± sample standard deviation over {}; n = runs per row (a cell that fewer of them logged gives its own n).\n", t.runs, over);
  } else {
    out += "\n" + MarkdownCell(t.spec.footer) + "\n";
  }
  if (!t.spec.note.empty()) out += "\n" + MarkdownCell(t.spec.note) + "\n";
  return out;
}

namespace {

// A LaTeX cell: the mean (bold when best), the std after it in \scriptsize, the cell's own n
// where fewer runs than the row's logged it.
std::string LatexCell(const Cell& c, bool percent, bool best, int64_t row_runs) {
  if (c.n == 0) return "--";
  const double scale = percent ? 100.0 : 1.0;
  auto number = [&](double v) {
    return percent || v == 0 || std::abs(c.mean) >= 1 ? fmt::format("{:.1f}", v * scale) : fmt::format("{:.3g}", v);
  };
  std::string out = best ? "\\textbf{" + number(c.mean) + "}" : number(c.mean);
  if (c.n > 1) out += "{\\scriptsize${}\\pm{}$" + number(c.std) + "}";
  if (c.n < row_runs) out += fmt::format(" ($n{{=}}{}$)", c.n);
  return out;
}

// Per metric column, the rows holding its best mean (by the metric's direction), or none.
std::vector<std::set<size_t>> BestRows(const Table& t) {
  std::vector<std::set<size_t>> best(t.spec.metrics.size());
  for (size_t m = 0; m < t.spec.metrics.size(); ++m) {
    const auto& col = t.spec.metrics[m];
    const Direction d = RuleFor(col.metric.empty() ? col.key : col.metric).direction;
    if (d == Direction::kNone) continue;
    double top = d == Direction::kHigherIsBetter ? -INFINITY : INFINITY;
    size_t with_value = 0;
    for (const auto& row : t.rows) {
      const Cell& c = row.cells[m];
      if (c.n == 0) continue;
      ++with_value;
      top = d == Direction::kHigherIsBetter ? std::max(top, c.mean) : std::min(top, c.mean);
    }
    if (with_value < 2) continue;  // one value is best of nothing
    // Equal as the table prints them: ties are all bold.
    auto printed = [&](double v) { return FormatCell(Cell{v, 0, 1}, col.percent, true, 1); };
    const std::string top_text = printed(top);
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const Cell& c = t.rows[r].cells[m];
      if (c.n > 0 && printed(c.mean) == top_text) best[m].insert(r);
    }
  }
  return best;
}

}  // namespace

double LatexWidthPt(const Table& t) {
  // Characters per column, the longest of header and cells; about 5 pt each at 10 pt (digits
  // are 5 pt, letters 4.4–5.6), the std's \scriptsize digits about 3.5 pt; 12 pt between columns.
  std::vector<double> width;
  auto widen = [&](size_t col, double pt) {
    if (width.size() <= col) width.resize(col + 1, 0);
    width[col] = std::max(width[col], pt);
  };
  size_t col = 0;
  for (const auto& h : t.spec.group_headers) widen(col++, 5.0 * static_cast<double>(h.size()));
  for (const auto& m : t.spec.metrics) widen(col++, 5.0 * static_cast<double>(m.header.size()));
  widen(col, 10);  // n
  for (const auto& row : t.rows) {
    size_t c = 0;
    for (const auto& k : Labelled(t.spec, row)) widen(c++, 5.0 * static_cast<double>(k.size()));
    for (size_t i = 0; i < row.cells.size(); ++i) {
      const Cell& cell = row.cells[i];
      const std::string mean = FormatCell(Cell{cell.mean, 0, 1}, t.spec.metrics[i].percent, false, 1);
      const std::string sd = cell.n > 1 ? FormatCell(Cell{cell.std, 0, 1}, t.spec.metrics[i].percent, false, 1) : "";
      widen(c++, 5.0 * static_cast<double>(mean.size()) + (sd.empty() ? 0 : 3.5 * static_cast<double>(sd.size() + 1)));
    }
  }
  double total = 0;
  for (double w : width) total += w + 12;
  return total;
}

std::string RenderLatex(const Table& t) {
  std::string cols(t.spec.group_headers.size(), 'l');
  cols += std::string(t.spec.metrics.size() + 1, 'r');
  const bool long_table = t.rows.size() > kLatexLongRows;
  std::string out = fmt::format("% Generated by transferbench report; needs \\usepackage{{booktabs}}{}.\n",
                                long_table ? " and \\usepackage{longtable}" : "");
  const double width = LatexWidthPt(t);
  if (width > kLatexTextWidthPt) {
    out += fmt::format(
        "% About {:.0f} pt wide: wider than a portrait text block ({:.0f} pt). Narrow it: `transferbench report "
        "--columns KEY,KEY` (fewer metrics), `--where KEY=VALUE` (fewer rows), or `--pivot rows=method,cols=KEY,"
        "value=METRIC` (one metric), or set it in landscape (\\usepackage{{pdflscape}}).\n",
        width, kLatexTextWidthPt);
  }
  int64_t least = 0, most = 0;
  for (const auto& row : t.rows) {
    least = least == 0 ? row.runs : std::min(least, row.runs);
    most = std::max(most, row.runs);
  }
  const std::string runs = least == most ? fmt::format("$n = {}$ runs per row", most)
                                         : fmt::format("$n = {}$--${}$ runs per row", least, most);
  const std::string caption = fmt::format(
      "{}. Mean {{\\scriptsize${{}}\\pm{{}}$ sample std}} over seeds, {}; the best value of each column in bold.",
      LatexEscape(t.spec.title), runs);
  std::string header;
  for (const auto& h : t.spec.group_headers) header += LatexEscape(h) + " & ";
  for (const auto& m : t.spec.metrics) header += LatexEscape(m.header) + " & ";
  header += "$n$ \\\\\n";
  if (long_table) {
    out += fmt::format("\\begin{{longtable}}{{{}}}\n\\caption{{{}}}\\\\\n\\toprule\n{}\\midrule\n\\endfirsthead\n", cols,
                       caption, header);
    out += fmt::format("\\multicolumn{{{}}}{{l}}{{\\emph{{(continued)}}}}\\\\\n\\toprule\n{}\\midrule\n\\endhead\n"
                       "\\bottomrule\n\\endfoot\n",
                       t.spec.group_headers.size() + t.spec.metrics.size() + 1, header);
  } else {
    out += fmt::format("\\begin{{table}}[t]\n\\centering\n\\caption{{{}}}\n\\begin{{tabular}}{{{}}}\n\\toprule\n{}\\midrule\n",
                       caption, cols, header);
  }
  const auto best = BestRows(t);
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& row = t.rows[r];
    std::string line;
    for (const auto& k : Labelled(t.spec, row)) line += (k.empty() ? std::string("--") : LatexEscape(k)) + " & ";
    // After \\ or \midrule a row starting with [ or * would be read as their optional argument.
    if (!line.empty() && (line.front() == '[' || line.front() == '*')) line = "{}" + line;
    for (size_t i = 0; i < row.cells.size(); ++i) {
      line += LatexCell(row.cells[i], t.spec.metrics[i].percent, best[i].count(r) > 0, row.runs) + " & ";
    }
    out += line + fmt::format("{} \\\\\n", row.runs);
  }
  out += long_table ? "\\end{longtable}\n" : "\\bottomrule\n\\end{tabular}\n\\end{table}\n";
  return out;
}

std::vector<std::pair<std::string, std::string>> ParseWhere(const std::string& text) {
  // Items end at a comma followed by KEY= (so a value may hold commas: tasks=01,23,45).
  auto next_item = [&](size_t from) {
    for (size_t c = text.find(',', from); c != std::string::npos; c = text.find(',', c + 1)) {
      size_t k = c + 1;
      while (k < text.size() && (std::isalnum(static_cast<unsigned char>(text[k])) || text[k] == '_' || text[k] == '.' ||
                                 text[k] == '/')) {
        ++k;
      }
      if (k > c + 1 && k < text.size() && text[k] == '=') return c;
    }
    return text.size();
  };
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = next_item(start);
    const std::string item = text.substr(start, end - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw BadInput(fmt::format("--where '{}': '{}' is not KEY=VALUE (expected e.g. method=linear_stitch,dataset=mnist)",
                                 text, item));
    }
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    start = end + 1;
  }
  return out;
}

PivotSpec ParsePivot(const std::string& text) {
  PivotSpec p;
  for (const auto& [key, value] : ParseWhere(text)) {
    if (value.empty()) throw BadInput(fmt::format("--pivot '{}': {} is empty", text, key));
    if (key == "rows") {
      size_t start = 0;
      while (start <= value.size()) {
        const size_t end = std::min(value.find('+', start), value.size());
        p.rows.push_back(value.substr(start, end - start));
        start = end + 1;
      }
    } else if (key == "cols") {
      p.cols = value;
    } else if (key == "value") {
      p.value = value;
    } else {
      throw BadInput(fmt::format("--pivot '{}': unknown part '{}' (expected rows=KEY[+KEY],cols=KEY,value=METRIC)", text, key));
    }
  }
  if (p.rows.empty() || p.cols.empty() || p.value.empty()) {
    throw BadInput(fmt::format("--pivot '{}': expected rows=KEY[+KEY],cols=KEY,value=METRIC (all three)", text));
  }
  return p;
}

void SelectColumns(TableSpec& spec, const std::vector<std::string>& keys) {
  std::vector<MetricColumn> kept;
  for (const auto& k : keys) {
    const auto it = std::find_if(spec.metrics.begin(), spec.metrics.end(), [&](const MetricColumn& m) { return m.key == k; });
    if (it == spec.metrics.end()) {
      std::string known;
      for (const auto& m : spec.metrics) known += (known.empty() ? "" : ", ") + m.key;
      throw BadInput(fmt::format("--columns {}: not a column of the table (expected one of: {})", k, known));
    }
    kept.push_back(*it);
  }
  spec.metrics = kept;
}

Table BuildPivot(RunStore& store, TableSpec spec, PivotSpec pivot) {
  // A row is one method's: rows that do not name the method get it first, so that no row sets
  // one method's cell beside another's.
  if (std::find(pivot.rows.begin(), pivot.rows.end(), "method") == pivot.rows.end() && pivot.cols != "method") {
    pivot.rows.insert(pivot.rows.begin(), "method");
  }
  spec.group_keys = pivot.rows;
  spec.group_keys.push_back(pivot.cols);
  spec.group_headers = spec.group_keys;
  spec.metrics.clear();
  const auto groups = GroupRuns(store, spec);
  const size_t r = pivot.rows.size();
  std::set<std::string> missing;  // keys no run has
  for (const auto& k : spec.group_keys) {
    if (k == "method" || k == "pair") continue;
    bool seen = false;
    for (const auto& g : groups) seen = seen || g.config.contains(k);
    if (!seen) missing.insert(k);
  }
  if (!groups.empty() && !missing.empty()) {
    throw BadInput(fmt::format("--pivot: no run has the option '{}' (expected config keys, method or pair)", *missing.begin()));
  }
  std::set<std::string> columns;
  for (const auto& g : groups) columns.insert(g.keys[r]);
  Table t;
  t.spec = spec;
  t.spec.group_keys = pivot.rows;
  t.spec.group_headers = pivot.rows;
  const MetricRule rule = RuleFor(pivot.value);
  std::map<std::string, size_t> index;
  for (const auto& c : columns) {
    index[c] = t.spec.metrics.size();
    t.spec.metrics.push_back({pivot.cols + "=" + c, c, rule.fraction, pivot.value});
  }
  t.spec.title = fmt::format("{}: {} by {} and {}",
                             !spec.title.empty() ? spec.title : spec.suite.empty() ? "all suites" : spec.suite, pivot.value,
                             fmt::join(pivot.rows, " × "), pivot.cols);
  t.spec.note = fmt::format("Each cell is one config group (runs equal but for the seed): mean ± sample std of {} over its "
                            "seeds. A row names what sets its groups apart beside the row keys.", pivot.value);
  std::map<std::pair<std::vector<std::string>, std::string>, size_t> row_of;
  bool logged = false;
  for (const auto& g : groups) {
    const std::vector<std::string> keys(g.keys.begin(), g.keys.begin() + static_cast<std::ptrdiff_t>(r));
    auto [it, fresh] = row_of.try_emplace({keys, g.variant}, t.rows.size());
    if (fresh) {
      TableRow row;
      row.keys = keys;
      row.variant = g.variant;
      row.cells.resize(columns.size());
      t.rows.push_back(std::move(row));
    }
    TableRow& row = t.rows[it->second];
    std::vector<double> values;
    for (const auto& run : g.runs) {
      const auto s = store.Summary(run.id);
      const auto v = s.find(pivot.value);
      values.push_back(v == s.end() ? std::nan("") : v->second);
      logged = logged || v != s.end();
    }
    row.cells[index.at(g.keys[r])] = Aggregate(values);
    row.runs = std::max<int64_t>(row.runs, static_cast<int64_t>(g.runs.size()));
    t.runs += static_cast<int64_t>(g.runs.size());
  }
  if (!groups.empty() && !logged) {
    throw BadInput(fmt::format("--pivot value={}: no run of the table logged it (expected a summary key, e.g. transfer_rate)",
                               pivot.value));
  }
  return t;
}

std::string RenderCsv(const Table& t) {
  std::string out;
  for (const auto& k : t.spec.group_keys) out += CsvField(k) + ",";
  out += "variant,";
  for (const auto& m : t.spec.metrics) out += fmt::format("{0}_mean,{0}_std,{0}_n,", m.key);
  out += "runs\n";
  for (const auto& row : t.rows) {
    for (const auto& k : row.keys) out += CsvField(k) + ",";
    out += CsvField(row.variant) + ",";
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
  // A plain file name (suite names are checked where they are given): nothing lands outside `dir`.
  if (name.empty() || name.find('/') != std::string::npos || name.front() == '.') {
    throw BadInput(fmt::format("report name '{}': expected a plain file name", name));
  }
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
