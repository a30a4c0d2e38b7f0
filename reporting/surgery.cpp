#include "reporting/surgery.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "store/hash.h"

namespace tb {
namespace {

// One config group of the main table, with its runs' transfer and preservation.
struct StoredGroup {
  const RunGroup* group = nullptr;
  std::string pair;                    // "source:target"
  std::string setting;                 // hash of the config without the pair: the same options on every pair
  nlohmann::json setting_config;
  std::vector<double> transfer, preservation;
};

std::string Get(const nlohmann::json& config, const std::string& key) {
  if (!config.contains(key)) return "";
  const auto& v = config.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

nlohmann::json WithoutPair(nlohmann::json config) {
  config.erase("arch_a");
  config.erase("arch_b");
  return config;
}

// What one reading of a claim selects.
struct Selector {
  std::string method;
  std::vector<std::string> pairs;  // "source:target"
  std::string head = "keep";       // "" for methods without the option
  std::string source = "trained";
  std::string epochs = "5";
  bool random_concept = false;     // the method's own control: concept_source=random
};

bool Matches(const StoredGroup& g, const std::string& dataset, const Selector& s) {
  const nlohmann::json& c = g.group->config;
  if (Get(c, "dataset") != dataset || g.group->method != s.method) return false;
  if (Get(c, "source") != s.source || Get(c, "train.epochs") != s.epochs) return false;
  if (Get(c, "calibrate") != "none" && !Get(c, "calibrate").empty()) return false;
  if (!s.head.empty() && c.contains("head") && Get(c, "head") != s.head) return false;
  if ((Get(c, "concept_source") == "random") != s.random_concept) return false;
  return std::find(s.pairs.begin(), s.pairs.end(), g.pair) != s.pairs.end();
}

// A measurement: the runs of one setting (one config group per pair, never two configs pooled
// on a pair), and how many other settings the selector also matched.
struct Measured {
  Cell transfer, preservation;
  nlohmann::json setting;         // the chosen setting's config (without the pair)
  std::set<std::string> pairs;    // the pairs it covers
  std::string label;              // the chosen groups' row label in the main table ("" unnamed)
  int64_t alternatives = 0;       // other settings that qualified, not pooled
  bool empty() const { return transfer.n == 0; }
};

Measured Aggregated(const std::vector<const StoredGroup*>& chosen) {
  Measured m;
  std::vector<double> t, p;
  for (const auto* g : chosen) {
    t.insert(t.end(), g->transfer.begin(), g->transfer.end());
    p.insert(p.end(), g->preservation.begin(), g->preservation.end());
    m.pairs.insert(g->pair);
  }
  m.transfer = Aggregate(t);
  m.preservation = Aggregate(p);
  if (!chosen.empty()) {
    m.setting = chosen.front()->setting_config;
    m.label = chosen.front()->group->variant;
  }
  return m;
}

// Groups by setting (what they share but what sets their cells apart: the pair, or the depth).
using BySetting = std::map<std::string, std::vector<const StoredGroup*>>;

// The setting that stands: the main table's unnamed row (the method as declared), then the one
// with the most groups (each covers one pair, or one depth), then the most runs, then the first
// by hash (the cell names it). Null if there is none.
const std::vector<const StoredGroup*>* Best(const BySetting& by_setting) {
  auto rank = [](const std::vector<const StoredGroup*>& v) {
    int64_t runs = 0, named = 0;
    for (const auto* g : v) {
      runs += static_cast<int64_t>(g->transfer.size());
      named += g->group->variant.empty() ? 0 : 1;
    }
    return std::make_tuple(-named, static_cast<int64_t>(v.size()), runs);
  };
  const std::vector<const StoredGroup*>* best = nullptr;
  for (const auto& [setting, v] : by_setting) {
    if (!best || rank(v) > rank(*best)) best = &v;
  }
  return best;
}

// The groups `accept` takes, by setting (the config but the pair); the Best one, aggregated.
Measured Choose(const std::vector<StoredGroup>& groups, const std::function<bool(const StoredGroup&)>& accept) {
  BySetting by_setting;
  for (const auto& g : groups) {
    if (accept(g)) by_setting[g.setting].push_back(&g);
  }
  const auto* best = Best(by_setting);
  if (!best) return {};
  Measured m = Aggregated(*best);
  m.alternatives = static_cast<int64_t>(by_setting.size()) - 1;
  return m;
}

Measured Measure(const std::vector<StoredGroup>& groups, const std::string& dataset, const Selector& s) {
  return Choose(groups, [&](const StoredGroup& g) { return Matches(g, dataset, s); });
}

// The runs of exactly `setting` (a chosen reading's, with a control's keys changed), on `pairs`.
Measured MeasureSetting(const std::vector<StoredGroup>& groups, const nlohmann::json& setting,
                        const std::set<std::string>& pairs) {
  const std::string hash = JsonHash(setting);
  std::vector<const StoredGroup*> chosen;
  for (const auto& g : groups) {
    if (g.setting == hash && pairs.count(g.pair)) chosen.push_back(&g);
  }
  return Aggregated(chosen);
}

std::string Pct(const Cell& c) {
  if (c.n == 0) return "–";
  return c.n > 1 ? fmt::format("{:.1f} ± {:.1f}", 100 * c.mean, 100 * c.std) : fmt::format("{:.1f}", 100 * c.mean);
}

// "87.0 ± 1.0 / 98.0 ± 0.0 (n=3)"; where other configs also qualified, which one it stands on.
std::string Pair(const Measured& m) {
  if (m.empty()) return "not run";
  std::string n = fmt::format("n={}", m.transfer.n);
  if (m.alternatives > 0) {
    n += fmt::format("; on {}; {} other config{} not pooled", m.label.empty() ? "the unnamed row" : m.label,
                     m.alternatives, m.alternatives > 1 ? "s" : "");
  }
  return fmt::format("{} / {} ({})", Pct(m.transfer), Pct(m.preservation), n);
}

struct ClaimSpec {
  std::string claim, report;
  double transfer;             // the report's transfer, in percent
  double preservation;         // the report's preservation, in percent (NaN: not stated)
  Selector selector;
  bool has_head;
};

const std::vector<std::string> kSameArch = {"mega:mega", "wide:wide", "deep:deep", "superwide:superwide",
                                            "verydeep:verydeep"};
const std::vector<std::string> kCross = {"deep:wide", "verydeep:superwide", "superwide:verydeep", "wide:mega"};

std::vector<ClaimSpec> Claims() {
  const double nan = std::nan("");
  return {
      {"Direct head-row copy transfers nothing", "0%", 0, nan, {"direct_copy", {"wide:wide"}, ""}, false},
      {"Cascade transplant", "51.9%", 51.9, nan, {"cascade_transplant", {"wide:wide"}, ""}, false},
      {"SAE concept injection", "100% / 0%", 100, 0, {"concept_injection", {"wide:wide"}}, true},
      {"Vector-space alignment (all same-architecture pairs)", "49.6% / 97%", 49.6, 97,
       {"vector_space_alignment", kSameArch}, true},
      {"Vector-space alignment, wide → wide", "87.4% / 97.6%", 87.4, 97.6, {"vector_space_alignment", {"wide:wide"}}, true},
      {"Vector-space alignment, superwide → verydeep", "97.9% / 96.1%", 97.9, 96.1,
       {"vector_space_alignment", {"superwide:verydeep"}}, true},
      {"Cross-architecture alignment (cross pairs)", "28.2% / 94.5-99%", 28.2, 94.5,
       {"cross_arch_alignment", kCross}, true},
      {"Lightly trained models take transfer (8 epochs)", "97.9% at 6-8 epochs", 97.9, nan,
       {"vector_space_alignment", {"wide:wide"}, "keep", "trained", "8"}, true},
      {"Heavily trained models take none (30 epochs)", "0%", 0, nan,
       {"vector_space_alignment", {"wide:wide"}, "keep", "trained", "30"}, true},
  };
}

bool Agrees(const Measured& m, const ClaimSpec& c) {
  if (m.empty()) return false;
  // Points: about a 95% interval of our mean (2 standard errors), and never under 10.
  const double tol = std::max(10.0, 2 * 100 * m.transfer.std / std::sqrt(static_cast<double>(m.transfer.n)));
  if (std::abs(100 * m.transfer.mean - c.transfer) > tol) return false;
  if (!std::isnan(c.preservation) && m.preservation.n > 0 && 100 * m.preservation.mean < c.preservation - 5) return false;
  return true;
}

std::string PairNames(const std::set<std::string>& pairs) {
  std::string names;
  for (const auto& p : pairs) names += (names.empty() ? "" : ", ") + p.substr(0, p.find(':')) + " → " + p.substr(p.find(':') + 1);
  return names;
}

}  // namespace

SurgeryTables BuildSurgeryTables(RunStore& store, const std::string& suite, const std::string& dataset,
                                 const DeclaredOptions& declared) {
  // The main table's config groups: a claim stands on one of them per pair, never on a pool.
  const std::vector<RunGroup> run_groups = GroupRuns(store, NightlyTableSpec(suite, declared));
  std::vector<StoredGroup> groups;
  for (const auto& rg : run_groups) {
    StoredGroup g;
    g.group = &rg;
    g.pair = Get(rg.config, "arch_b") + ":" + Get(rg.config, "arch_a");
    g.setting_config = WithoutPair(rg.config);
    g.setting = JsonHash(g.setting_config);
    for (const auto& run : rg.runs) {
      const auto summary = store.Summary(run.id);
      auto ti = summary.find("transfer_rate");
      auto pi = summary.find("preservation");
      g.transfer.push_back(ti == summary.end() ? std::nan("") : ti->second);
      g.preservation.push_back(pi == summary.end() ? std::nan("") : pi->second);
    }
    groups.push_back(std::move(g));
  }
  // The run-level options a label_probe reference must share with the reading it is set against.
  std::vector<std::string> run_keys;
  const nlohmann::json run_level = declared.RunLevel("surgery");
  for (const auto& [k, v] : run_level.items()) {
    if (k != "arch_a" && k != "arch_b" && k != "seed" && k != "threads" && k != "device") run_keys.push_back(k);
  }
  SurgeryTables t;
  t.suite = suite;
  t.dataset = dataset;
  t.epochs = {1, 2, 4, 8, 15, 30};
  // A depth row stands on one setting across its columns (the config but the pair and the
  // epochs), chosen as a claim's is.
  for (const std::string method : {"direct_copy", "cascade_transplant", "vector_space_alignment", "linear_stitch",
                                   "label_probe"}) {
    DepthRow row;
    row.method = method;
    BySetting by_setting;  // the config but the pair and the epochs
    for (const auto& g : groups) {
      for (int64_t e : t.epochs) {
        Selector s{method, {"wide:wide"}, method == "vector_space_alignment" ? "keep" : "", "trained", std::to_string(e)};
        if (!Matches(g, dataset, s)) continue;
        nlohmann::json rest = g.setting_config;
        rest.erase("train.epochs");
        by_setting[JsonHash(rest)].push_back(&g);
      }
    }
    const auto* best = Best(by_setting);
    if (!best) continue;
    row.alternatives = static_cast<int64_t>(by_setting.size()) - 1;
    for (int64_t e : t.epochs) {
      std::vector<const StoredGroup*> cell;
      for (const auto* g : *best) {
        if (Get(g->group->config, "train.epochs") == std::to_string(e)) cell.push_back(g);
      }
      const Measured m = Aggregated(cell);
      row.transfer.push_back(m.transfer);
      row.preservation.push_back(m.preservation);
    }
    t.depth.push_back(row);
  }
  for (const auto& c : Claims()) {
    ClaimRow row;
    row.claim = c.claim;
    row.report = c.report;
    std::vector<std::string> agreeing;
    const std::vector<std::string> heads = c.has_head ? std::vector<std::string>{"keep", "copy_row", "stitch_row"}
                                                      : std::vector<std::string>{""};
    // The reading the verdict stands on: the first that agrees, else the one with most transfer.
    std::string chosen_head = heads.front();
    Measured chosen;
    for (const auto& h : heads) {
      Selector s = c.selector;
      s.head = h;
      const Measured m = Measure(groups, dataset, s);
      row.readings.push_back(Pair(m));
      const bool agrees = Agrees(m, c);
      if (agrees) agreeing.push_back(h.empty() ? "as specified" : "head=" + h);
      if (!m.empty() && (chosen.empty() || (agreeing.size() == 1 && agrees) ||
                         (agreeing.empty() && m.transfer.mean > chosen.transfer.mean))) {
        chosen = m;
        chosen_head = h;
      }
    }
    while (row.readings.size() < 3) row.readings.push_back("(no head option)");
    // Controls of the chosen reading's own config, with only the control changed: B replaced by
    // a fresh initialisation (source=random), and the method's own control where it has one
    // (concept_source=random), on the pairs they were run on.
    std::set<std::string> claim_pairs(c.selector.pairs.begin(), c.selector.pairs.end());
    Measured ctl_b, ctl_concept;
    if (!chosen.empty()) {
      nlohmann::json b_random = chosen.setting, concept_random = chosen.setting;
      b_random["source"] = "random";
      ctl_b = MeasureSetting(groups, b_random, claim_pairs);
      if (chosen.setting.contains("concept_source")) {
        concept_random["concept_source"] = "random";
        ctl_concept = MeasureSetting(groups, concept_random, claim_pairs);
      }
    }
    std::vector<std::string> controls;
    // A control is set against the chosen reading on the pairs the control covers; where those
    // are fewer than the reading's, the cell names them.
    auto describe = [&](const char* what, const Measured& m) {
      if (m.empty()) return;
      std::string text = std::string(what) + ": " + Pair(m);
      if (m.pairs.size() < chosen.pairs.size()) text += " on " + PairNames(m.pairs);
      controls.push_back(text);
    };
    describe("B random", ctl_b);
    describe("concept random", ctl_concept);
    if (controls.empty()) {
      row.control = "not run";
    } else {
      row.control = chosen_head.empty() ? "" : "head=" + chosen_head + ": ";
      for (size_t i = 0; i < controls.size(); ++i) row.control += (i ? "; " : "") + controls[i];
    }
    // Does a control do as well as the reading, on the same pairs?
    auto control_matches = [&](const Measured& m) {
      if (m.empty()) return false;
      const Measured r = MeasureSetting(groups, chosen.setting, m.pairs);
      return r.transfer.n > 0 && r.transfer.mean > 0.1 && m.transfer.mean >= r.transfer.mean - 0.1;
    };
    // label_probe on the same pairs and the same data (every run-level option of the reading).
    const Selector probe_selector{"label_probe", c.selector.pairs, "", "trained", c.selector.epochs};
    const Measured pr = Choose(groups, [&](const StoredGroup& g) {
      if (!Matches(g, dataset, probe_selector)) return false;
      if (chosen.empty()) return true;
      for (const auto& k : run_keys) {
        if (Get(g.setting_config, k) != Get(chosen.setting, k)) return false;
      }
      return true;
    });
    row.probe = Pair(pr);
    if (chosen.empty()) {
      row.verdict = "not measured";
    } else if (!agreeing.empty() && (agreeing.front() == "as specified" || agreeing.front() == "head=keep")) {
      row.verdict = "reproduced";
    } else if (!agreeing.empty()) {
      row.verdict = "only under " + agreeing.front();
    } else {
      row.verdict = "not reproduced";
    }
    // What the references say about the reading the verdict stands on, where it moved anything.
    if (control_matches(ctl_b) || control_matches(ctl_concept)) {
      row.verdict += "; control matches it: not transfer";
    }
    if (!chosen.empty() && chosen.transfer.mean > 0.1 && !pr.empty() && pr.transfer.mean >= chosen.transfer.mean) {
      row.verdict += "; label_probe does as well";
    }
    t.claims.push_back(row);
  }
  return t;
}

std::string RenderSurgeryMarkdown(const SurgeryTables& t) {
  std::string out;
  bool footnote = false;
  if (!t.depth.empty()) {
    out += fmt::format("## Training depth ({}, wide → wide): transfer % / preservation %\n\n| Method |", t.dataset);
    std::string rule = "|---|";
    for (int64_t e : t.epochs) {
      out += fmt::format(" {} epochs |", e);
      rule += "---:|";
    }
    out += "\n" + rule + "\n";
    for (const auto& row : t.depth) {
      out += "| " + MarkdownCell(row.method) + (row.alternatives > 0 ? " *" : "") + " |";
      for (size_t i = 0; i < t.epochs.size(); ++i) {
        out += row.transfer[i].n == 0 ? " – |"
                                      : fmt::format(" {:.1f} / {:.1f} |", 100 * row.transfer[i].mean,
                                                    100 * row.preservation[i].mean);
      }
      footnote = footnote || row.alternatives > 0;
      out += "\n";
    }
    out += "\nMeans over seeds; A and B trained for the given epochs; vector_space_alignment with head=keep.";
    if (footnote) out += " *: other configs of this method were run too; the row stands on one across its columns, as the claims do.";
    out += "\n\n";
  }
  out += fmt::format("## Claims of the surgery report against our measurements ({})\n\n", t.dataset);
  out += "| Claim | Report | Ours, head=keep (literal) | Ours, head=copy_row | Ours, head=stitch_row | "
         "Controls (random source) | label_probe | Verdict |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : t.claims) {
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", MarkdownCell(r.claim), MarkdownCell(r.report),
                       MarkdownCell(r.readings[0]), MarkdownCell(r.readings[1]), MarkdownCell(r.readings[2]),
                       MarkdownCell(r.control), MarkdownCell(r.probe), MarkdownCell(r.verdict));
  }
  out += "\nCells: transfer % / preservation %, mean ± std over seeds (n runs). A claim is reproduced when our "
         "mean transfer is within max(10 points, 2 standard errors) of the report's and our preservation is no more than 5 points "
         "below it; \"only under\" names the first head reading that agrees. The random-source control replaces B "
         "by a fresh initialisation (B random), or, for methods that build a concept vector, that vector by a random one of "
         "the same norm (concept random), under the head of the reading the verdict stands on (the first that agrees, "
         "else the one with most transfer); label_probe trains A's class-4 row on the same data with no source at all. "
         "Each cell stands on one config per model pair (the main table's rows); where several qualify, the cell "
         "names the one it stands on.\n";
  return out;
}

bool HasMeasurements(const SurgeryTables& t) {
  if (!t.depth.empty()) return true;
  for (const auto& c : t.claims) {
    if (c.verdict != "not measured") return true;
  }
  return false;
}

SuiteReport BuildSuiteReport(RunStore& store, const std::string& suite, const DeclaredOptions& declared) {
  SuiteReport r;
  r.main = BuildTable(store, NightlyTableSpec(suite, declared));
  for (const std::string dataset : {"mnist", "fashion-mnist"}) {
    SurgeryTables s = BuildSurgeryTables(store, suite, dataset, declared);
    if (HasMeasurements(s)) r.surgery.push_back(std::move(s));
  }
  // The other protocols' tables: each in its own files, and in the Markdown after the surgery's.
  for (const TableSpec& spec :
       {MergeTableSpec(suite, declared), ContinualTableSpec(suite, declared), BootstrapTableSpec(suite, declared)}) {
    Table t = BuildTable(store, spec);
    if (!t.rows.empty()) r.protocols.push_back(std::move(t));
  }
  // The zoo table of the grids the suite's runs took their models from (zoo.grid: a grid's name,
  // or the path of its file, which names it).
  std::set<std::string> grids;
  for (const auto& run : ReportRuns(store, suite)) {
    const auto it = run.config.find("zoo.grid");
    if (it == run.config.end() || !it->is_string() || it->get<std::string>().empty()) continue;
    std::string grid = it->get<std::string>();
    if (std::ifstream file(grid); file && grid.find('/') != std::string::npos) {
      const auto doc = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
      if (doc.is_object() && doc.contains("name") && doc["name"].is_string()) grid = doc["name"].get<std::string>();
    }
    grids.insert(grid);
  }
  if (!grids.empty()) {
    Table zoo = BuildZooTable(store, {grids.begin(), grids.end()});
    if (!zoo.rows.empty()) r.zoo = std::move(zoo);
  }
  return r;
}

std::vector<std::string> SuiteMarkdownSections(const SuiteReport& report) {
  std::vector<std::string> sections = {RenderMarkdown(report.main)};
  for (const auto& s : report.surgery) sections.push_back(RenderSurgeryMarkdown(s));
  for (const auto& t : report.protocols) sections.push_back(RenderMarkdown(t));
  if (report.zoo) sections.push_back(RenderMarkdown(*report.zoo));
  return sections;
}

std::vector<std::string> WriteSuiteReport(RunStore& store, const std::string& suite, const std::string& dir,
                                          const std::string& name, const DeclaredOptions& declared) {
  const SuiteReport report = BuildSuiteReport(store, suite, declared);
  std::vector<std::string> paths = WriteTable(report.main, dir, name);
  std::string claims_csv;
  for (const auto& s : report.surgery) {
    const std::string csv = RenderClaimsCsv(s);
    claims_csv += claims_csv.empty() ? "dataset," + csv.substr(0, csv.find('\n') + 1) : "";
    for (size_t pos = csv.find('\n') + 1; pos < csv.size();) {
      const size_t end = csv.find('\n', pos);
      claims_csv += s.dataset + "," + csv.substr(pos, end - pos + 1);
      pos = end + 1;
    }
  }
  if (!claims_csv.empty()) {
    const std::string claims_path = (std::filesystem::path(dir) / (name + "-claims.csv")).string();
    std::ofstream(claims_path) << claims_csv;
    paths.push_back(claims_path);
  }
  for (const auto& t : report.protocols) {
    for (auto& p : WriteTable(t, dir, name + "-" + t.spec.protocol)) paths.push_back(std::move(p));
  }
  if (report.zoo) {
    for (auto& p : WriteTable(*report.zoo, dir, name + "-zoo")) paths.push_back(std::move(p));
  }
  // The Markdown report is every section; WriteTable wrote the first.
  const std::vector<std::string> sections = SuiteMarkdownSections(report);
  std::string extra;
  for (size_t i = 1; i < sections.size(); ++i) extra += "\n" + sections[i];
  if (!extra.empty()) std::ofstream(paths.front(), std::ios::app) << extra;
  return paths;
}

std::string RenderClaimsCsv(const SurgeryTables& t) {
  auto q = [](const std::string& s) {  // every field quoted (RFC 4180 allows it), so line breaks too
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  std::string out = "claim,report,ours_keep,ours_copy_row,ours_stitch_row,controls,label_probe,verdict\n";
  for (const auto& r : t.claims) {
    out += fmt::format("{},{},{},{},{},{},{},{}\n", q(r.claim), q(r.report), q(r.readings[0]), q(r.readings[1]),
                       q(r.readings[2]), q(r.control), q(r.probe), q(r.verdict));
  }
  return out;
}

}  // namespace tb
