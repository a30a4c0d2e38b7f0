// The HTML report from a real store: every table of the Markdown report and every registered
// plot on the page, specs valid Vega-Lite JSON with inline data, the runtime inlined under the
// page's policy, and hostile strings from the store shown only as text. With TB_KEEP_STORE=PATH,
// HtmlReportTest.EveryTableAndPlotIsOnThePage leaves its store at PATH for the browser check
// (tests/browser/check_html_report.sh).
#include "reporting/html.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>

#include "reporting/plots.h"
#include "store/errors.h"
#include "store/hash.h"
#include "tests/test_util.h"

namespace tb {
namespace {

using nlohmann::json;

const std::string kScript = "<script>alert(1)</script>";
const std::string kImg = "\"><img src=x onerror=alert(1)>";

DeclaredOptions Declared() {
  DeclaredOptions d;
  d.run = {{"dataset", "mnist"}, {"train.epochs", 5}, {"source", "trained"}, {"calibrate", "none"}, {"seed", 0}};
  for (const char* m : {"weight_average", "ties_merge", "union_retrain"}) d.protocol[m] = "merge";
  d.protocol["merge_continual"] = "continual";
  for (const char* m : {"random_init", "weight_map"}) d.protocol[m] = "bootstrap";
  return d;
}

std::string Finish(RunStore& store, NewRun r, const std::map<std::string, double>& summary) {
  if (r.suite.empty()) r.suite = "nightly";
  r.dataset = "mnist";
  r.config["dataset"] = "mnist";
  r.config["method"] = r.method;
  r.config["seed"] = r.seed;
  const std::string id = store.CreateRun(r);
  store.SetSummary(id, summary);
  store.FinishRun(id, RunStatus::kFinished, 0, "");
  return id;
}

void Surgery(RunStore& store, const std::string& method, const std::string& head, const std::string& source,
             int64_t epochs, int64_t seed, double transfer, const json& extra = json::object(),
             const std::string& suite = "", const std::vector<std::string>& tags = {}) {
  NewRun r;
  r.suite = suite;
  r.method = method;
  r.seed = seed;
  r.tags = tags;
  r.config = {
      {"arch_a", "wide"}, {"arch_b", "wide"}, {"source", source}, {"calibrate", "none"}, {"train.epochs", epochs}};
  if (!head.empty()) r.config["head"] = head;
  r.config.update(extra);
  Finish(store, r, {{"transfer_rate", transfer}, {"preservation", 0.97 - 0.01 * seed}, {"joint_acc", 0.8}});
}

// Surgery-, merge- and continual-like runs with the summary keys the glossary names; the
// hostile strings in a displayed option (head, parents_init, merge), in an option that sets a
// row apart (note), in a suite's name and in a tag.
void BuildStore(RunStore& store) {
  for (int64_t s = 0; s < 3; ++s) {
    Surgery(store, "vector_space_alignment", "keep", "trained", 5, s, 0.1 + 0.02 * s);
    Surgery(store, "vector_space_alignment", "copy_row", "trained", 5, s, 0.85 + 0.01 * s);
    Surgery(store, "vector_space_alignment", "copy_row", "random", 5, s, 0.1);
    Surgery(store, "label_probe", "", "trained", 5, s, 0.8);
    for (int64_t e : {1, 2, 4, 8}) Surgery(store, "direct_copy", "", "trained", e, s, 0.01 * e, {{"note", "plain"}});
  }
  for (int64_t s = 0; s < 2; ++s) {
    Surgery(store, "vector_space_alignment", kScript, "trained", 5, s, 0.5);
    Surgery(store, "direct_copy", "", "trained", 5, s, 0.0, {{"note", kImg}});
  }
  Surgery(store, "direct_copy", "", "shuffled", 5, 9, 0.0, json::object(), kScript, {kImg});
  for (int64_t s = 0; s < 2; ++s) {
    for (const std::string method : {"weight_average", "ties_merge", "union_retrain"}) {
      for (const std::string& init : {std::string("shared"), kImg}) {
        if (method != "weight_average" && init != "shared") continue;
        NewRun r;
        r.method = method;
        r.seed = s;
        r.config = {{"parents_init", init}, {"source", "trained"}, {"classes_1", "0,1,2"}, {"classes_2", "3,4,5"}};
        const double a = method == "union_retrain" ? 0.95 : 0.5 + 0.05 * s;
        Finish(store, r,
               {{"iid_acc", a},
                {"iid_acc_ft1", a + 0.2},
                {"iid_acc_ft2", a + 0.25},
                {"iid_acc_ft5", a + 0.3},
                {"ood_acc", 0.01},
                {"shift_acc", 0.4},
                {"joint_acc", 0.6},
                {"per_task_acc", 0.9},
                {"normalized_acc", 0.7},
                {"collapse", 0.2},
                {"catchup_parents", 40},
                {"catchup_parents_reached", 1},
                {"stability", 0},
                {"union_weight_mse", 0.002}});
      }
    }
    for (const std::string& merge : {std::string("weight_average"), kScript}) {
      NewRun r;
      r.method = "merge_continual";
      r.seed = s;
      r.config = {{"merge", merge}, {"tasks", "01,23,45"}, {"source", "trained"}};
      std::map<std::string, double> summary = {
          {"avg_acc", 0.6}, {"forgetting_max", 0.3}, {"forgetting_first", 0.3},     {"bwt", -0.3},
          {"fwt", -0.1},    {"avg_acc_task", 0.9},   {"forgetting_max_task", 0.05}, {"fwt_task", 0.01}};
      for (const std::string suffix : {"", "_task"}) {
        for (int i = 0; i < 3; ++i) {
          summary[fmt::format("acc_init{}/{}", suffix, i)] = 0.1;
          for (int j = 0; j < 3; ++j)
            summary[fmt::format("acc_matrix{}/{}/{}", suffix, i, j)] = j <= i ? 0.9 - 0.2 * (i - j) : 0.0;
        }
      }
      Finish(store, r, summary);
    }
    // Bootstrapping a cfc from an xlstm: the reference and one method, each with its curve.
    for (const std::string method : {"random_init", "weight_map"}) {
      NewRun r;
      r.method = method;
      r.seed = s;
      r.config = {{"arch_b", "xlstm"}, {"arch_a", "cfc"}, {"source", "trained"}};
      const double lift = method == "weight_map" ? 0.2 : 0.0;
      const std::string id = Finish(store, r,
                                    {{"step0", 0.1 + lift}, {"final", 0.8}, {"aulc", 0.5 + lift}, {"steps_to_target", 20},
                                     {"target_reached", 1}, {"speedup", method == "weight_map" ? 2.0 : 1.0},
                                     {"dead_capacity", 0.0}, {"random_init/aulc", 0.5}});
      std::vector<MetricRow> curve;
      for (int64_t step : {0, 10, 20}) curve.push_back({step, "curve/acc", 0.1 + lift + 0.03 * step, 0.0});
      store.AppendMetrics(id, curve);
    }
  }
}

// A runtime that is not Vega: what the page must do with any script it inlines.
std::string StubRuntime(const testing::TempDir& dir) {
  const std::string runtime = dir / "runtime";
  std::filesystem::create_directories(runtime);
  for (const char* name : {"vega", "vega-lite", "vega-embed"}) {
    testing::WriteFile(
        runtime + "/" + name + ".min.js",
        fmt::format("var stub_{} = \"</script><!--\";\n//# sourceMappingURL={}.min.js.map\n", name[5] ? 1 : 0, name));
  }
  testing::WriteFile(runtime + "/versions.json", R"({"vega": "0.0.1", "vega-lite": "0.0.2", "vega-embed": "0.0.3"})");
  return runtime;
}

std::string Between(const std::string& page, const std::string& open, const std::string& close) {
  const size_t b = page.find(open);
  if (b == std::string::npos) return "";
  return page.substr(b + open.size(), page.find(close, b + open.size()) - b - open.size());
}

json Plots(const std::string& page) {
  return json::parse(Between(page, "<script type=\"application/json\" id=\"tb-plots\">", "</script>"));
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + what.size())) ++n;
  return n;
}

bool HasUrl(const json& j) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (k == "url" || HasUrl(v)) return true;
    }
  }
  if (j.is_array()) {
    for (const auto& v : j) {
      if (HasUrl(v)) return true;
    }
  }
  return false;
}

// The page of every suite from BuildStore's store, kept at $TB_KEEP_STORE when that is set.
struct Rendered {
  testing::TempDir dir;
  std::string page;
  SuiteReport report;
  Rendered() {
    const char* keep = std::getenv("TB_KEEP_STORE");
    const std::string path = keep ? keep : dir / "runs.db";
    for (const char* ext : {"", "-wal", "-shm"}) std::filesystem::remove(path + ext);
    RunStore store(path);
    BuildStore(store);
    report = BuildSuiteReport(store, "", Declared());
    page = RenderHtmlReport(store, "", report, Declared(), {StubRuntime(dir)});
  }
};

TEST(HtmlReportTest, EveryTableAndPlotIsOnThePage) {
  Rendered r;
  std::string md;
  for (const auto& s : SuiteMarkdownSections(r.report)) md += s;
  // Every Markdown table, as a sortable table under its heading.
  EXPECT_EQ(Count(r.page, "<table class=\"tb-sortable\">"), Count(md, "\n|---"));
  EXPECT_EQ(Count(md, "\n|---"), 6u);  // main, training depth, claims, merge, continual, bootstrap
  for (size_t pos = md.find("## "); pos != std::string::npos; pos = md.find("\n## ", pos + 1)) {
    const size_t b = md[pos] == '\n' ? pos + 4 : pos + 3;
    const std::string title = md.substr(b, md.find('\n', b) - b);
    EXPECT_NE(r.page.find(">" + HtmlEscape(title) + "</h3>"), std::string::npos) << title;
  }
  for (const char* header : {"Transfer %", "IID ep5 %", "Avg acc %", "Verdict", "30 epochs", "Speed-up ×"}) {
    EXPECT_NE(r.page.find("<button type=\"button\">" + std::string(header) + "</button>"), std::string::npos) << header;
  }
  // copy_row's transfer, right-aligned, as the .md has it.
  EXPECT_NE(r.page.find("<td class=\"num\">86.0 ± 1.0</td>"), std::string::npos);
  // Every registered plot that applies, valid Vega-Lite with its data inline.
  const json plots = Plots(r.page);
  std::set<std::string> names;
  for (const auto& p : plots) {
    names.insert(p.at("name").get<std::string>());
    const json& spec = p.at("spec");
    EXPECT_EQ(spec.at("$schema"), kVegaLiteSchema);
    EXPECT_FALSE(spec.at("data").at("values").empty()) << p.at("name");
    EXPECT_FALSE(HasUrl(spec)) << p.at("name");
  }
  EXPECT_EQ(names, (std::set<std::string>{"transfer-preservation/mnist", "training-depth/mnist", "finetune/mnist",
                                          "accuracy-matrix/mnist", "learning-curves/mnist/xlstm → cfc"}));
  for (const auto& p : plots) {
    const json& values = p.at("spec").at("data").at("values");
    const std::map<std::string, size_t> expected = {
        {"transfer-preservation/mnist", 3 * 8 + 2 * 2 + 1},  // one per surgery run
        {"training-depth/mnist", 2 * 4},                     // direct_copy at 1, 2, 4, 8 epochs
        {"finetune/mnist", 8 * 4},                           // merge runs × epochs 0, 1, 2, 5
        {"accuracy-matrix/mnist", 2 * 2 * 9},                // continual rows × readings × R[i][j]
        {"learning-curves/mnist/xlstm → cfc", 2 * 2 * 3}};   // bootstrap runs × evaluated steps
    EXPECT_EQ(values.size(), expected.at(p.at("name").get<std::string>())) << p.at("name");
  }
  for (size_t i = 0; i < plots.size(); ++i) {
    EXPECT_NE(r.page.find(fmt::format("data-plot=\"{}\"", i)), std::string::npos);
  }
  EXPECT_NE(r.page.find("<pre id=\"tb-check\" hidden></pre>"), std::string::npos);
}

TEST(HtmlReportTest, HostileStringsShowOnlyAsText) {
  Rendered r;
  // Nowhere as markup: not in a table, a heading, the header's suite list or the specs.
  EXPECT_EQ(r.page.find(kScript), std::string::npos);
  EXPECT_EQ(r.page.find("<img"), std::string::npos);
  EXPECT_EQ(r.page.find("onerror=alert(1)>"), std::string::npos);
  // As text: in the main table's Head column and a row's note=, the merge and continual
  // tables, and the list of suites.
  const std::string script_text = HtmlEscape(kScript), img_text = HtmlEscape(kImg);
  EXPECT_EQ(script_text, "&lt;script&gt;alert(1)&lt;/script&gt;");
  EXPECT_EQ(img_text, "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;");
  EXPECT_NE(r.page.find("<td>" + script_text + "</td>"), std::string::npos);
  EXPECT_NE(r.page.find("note=" + img_text), std::string::npos);
  EXPECT_NE(r.page.find("<td>" + img_text + "</td>"), std::string::npos);
  EXPECT_NE(r.page.find("suites " + script_text + ", nightly"), std::string::npos);
  // In the specs' data as \u escapes that parse back to the very strings.
  EXPECT_NE(r.page.find("\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"), std::string::npos);
  const std::string specs = Plots(r.page).dump();
  for (const auto& s : {kScript, kImg}) EXPECT_NE(specs.find(json(s).dump()), std::string::npos) << s;
  EXPECT_NE(specs.find("\"suite\":" + json(kScript).dump()), std::string::npos);
  EXPECT_NE(specs.find("\"tags\":" + json(kImg).dump()), std::string::npos);
}

TEST(HtmlReportTest, RuntimeIsInlinedUnderThePagePolicy) {
  Rendered r;
  // Inlined, made unable to close its element or start a comment, its source map dropped.
  EXPECT_NE(r.page.find("var stub_1 = \"<\\/script>\\x3C!--\";"), std::string::npos);
  EXPECT_EQ(r.page.find("sourceMappingURL"), std::string::npos);
  EXPECT_NE(r.page.find("vega 0.0.1, vega-lite 0.0.2, vega-embed 0.0.3"), std::string::npos);
  // The policy: no network at all, and only the page's own five scripts, by hash.
  const std::string csp = Between(r.page, "<meta http-equiv=\"Content-Security-Policy\" content=\"", "\">");
  EXPECT_EQ(csp.rfind("default-src &#39;none&#39;;", 0), 0u) << csp;
  EXPECT_EQ(Count(csp, "sha256-"), 5u);
  const std::string script_src = Between(csp, "script-src", ";");
  EXPECT_EQ(script_src.find("unsafe-inline"), std::string::npos) << script_src;
  auto base64 = [](const std::string& hex) {
    const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string raw, out;
    for (size_t i = 0; i < hex.size(); i += 2) raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    for (size_t i = 0; i < raw.size(); i += 3) {
      const size_t left = raw.size() - i;  // bytes in this group: 1, 2 or 3
      uint32_t v = static_cast<uint8_t>(raw[i]) << 16;
      if (left > 1) v |= static_cast<uint8_t>(raw[i + 1]) << 8;
      if (left > 2) v |= static_cast<uint8_t>(raw[i + 2]);
      for (size_t k = 0; k < 4; ++k) out += k <= left ? digits[(v >> (18 - 6 * k)) & 63] : '=';
    }
    return out;
  };
  int scripts = 0;
  for (size_t pos = r.page.find("<script>"); pos != std::string::npos; pos = r.page.find("<script>", pos + 1)) {
    const size_t end = r.page.find("</script>", pos);
    const std::string body = r.page.substr(pos + 8, end - pos - 8);
    EXPECT_NE(csp.find("sha256-" + base64(Sha256Hex(body))), std::string::npos) << "script " << scripts;
    ++scripts;
  }
  EXPECT_EQ(scripts, 5);
}

TEST(HtmlReportTest, MissingRuntimeIsBadInput) {
  testing::TempDir dir;
  RunStore store(dir / "runs.db");
  const SuiteReport report = BuildSuiteReport(store, "nightly", Declared());
  try {
    RenderHtmlReport(store, "nightly", report, Declared(), {dir / "nowhere"});
    FAIL() << "expected BadInput";
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()),
              (dir / "nowhere/vega.min.js") + ": the Vega runtime is missing (run scripts/fetch-vega)");
  }
}

TEST(HtmlReportTest, EmptySuiteHasItsTableAndNoPlots) {
  testing::TempDir dir;
  RunStore store(dir / "runs.db");
  const std::string path =
      WriteHtmlReport(store, "nightly", dir / "reports", "nightly", Declared(), {StubRuntime(dir)});
  EXPECT_EQ(path, dir / "reports/nightly.html");
  const std::string page = testing::ReadFile(path);
  EXPECT_EQ(Count(page, "<table class=\"tb-sortable\">"), 1u);
  EXPECT_EQ(page.find("id=\"plots\""), std::string::npos);
  EXPECT_EQ(Plots(page), json::array());
  EXPECT_NE(page.find("<h1>TransferBench — suite nightly</h1>"), std::string::npos);
  EXPECT_THROW(WriteHtmlReport(store, "nightly", dir / "reports", "../x", Declared(), {StubRuntime(dir)}), BadInput);
}

TEST(HtmlPlotsTest, RegistryHoldsAPlotOfEveryProtocol) {
  std::set<std::string> names, protocols;
  for (const auto& e : PlotRegistry()) {
    names.insert(e.name);
    protocols.insert(e.protocol);
    EXPECT_FALSE(e.title.empty() || e.applies.empty()) << e.name;
    EXPECT_TRUE(e.build) << e.name;
  }
  EXPECT_EQ(names, (std::set<std::string>{"transfer-preservation", "training-depth", "finetune", "accuracy-matrix",
                                          "learning-curves"}));
  EXPECT_EQ(protocols, (std::set<std::string>{"surgery", "merge", "continual", "bootstrap"}));
}

TEST(HtmlEscapeTest, TextAndScriptJson) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  const json j = {{"s", "</script><!-- & \u2028"}};
  const std::string dumped = ScriptJson(j);
  EXPECT_EQ(dumped, "{\"s\":\"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028\"}");
  EXPECT_EQ(json::parse(dumped), j);
  EXPECT_EQ(json::parse(ScriptJson(json("bad \xff utf-8"))), json("bad \xef\xbf\xbd utf-8"));
}

}  // namespace
}  // namespace tb
