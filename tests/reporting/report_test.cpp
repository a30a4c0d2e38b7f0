#include "reporting/report.h"

#include <cmath>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

std::string AddRun(RunStore& store, const std::string& method, const std::string& arch, int64_t seed,
                   const std::string& source, double transfer, double preservation, RunStatus status) {
  NewRun r;
  r.suite = "nightly";
  r.method = method;
  r.dataset = "mnist";
  r.seed = seed;
  r.config = {{"dataset", "mnist"}, {"method", method}, {"arch_a", arch}, {"arch_b", arch},
              {"seed", seed}, {"source", source}};
  const auto id = store.CreateRun(r);
  store.SetSummary(id, {{"transfer_rate", transfer}, {"preservation", preservation}, {"degradation", 1.5},
                        {"false_transfer", 0.0}, {"joint_acc", 0.5}});
  store.FinishRun(id, status, status == RunStatus::kFinished ? 0 : 1, "");
  return id;
}

TEST(ReportTest, AggregateIsMeanAndSampleStd) {
  Cell c = Aggregate({0.2, 0.4, 0.6, std::nan("")});
  EXPECT_EQ(c.n, 3);
  EXPECT_DOUBLE_EQ(c.mean, 0.4);
  EXPECT_NEAR(c.std, 0.2, 1e-12);  // sqrt((0.04 + 0 + 0.04) / 2)
  EXPECT_EQ(Aggregate({}).n, 0);
  EXPECT_DOUBLE_EQ(Aggregate({0.7}).std, 0.0);
}

// Golden files: three finished seeds of one row, one of another, one failed run left out.
TEST(ReportTest, MatchesGoldenMarkdownLatexAndCsv) {
  RunStore store(":memory:");
  AddRun(store, "finetune", "wide", 0, "trained", 1.0, 0.10, RunStatus::kFinished);
  AddRun(store, "finetune", "wide", 1, "trained", 0.9, 0.20, RunStatus::kFinished);
  AddRun(store, "finetune", "wide", 2, "trained", 0.8, 0.30, RunStatus::kFinished);
  AddRun(store, "direct_copy", "deep", 0, "shuffled", 0.0, 0.99, RunStatus::kFinished);
  AddRun(store, "direct_copy", "deep", 1, "shuffled", 0.5, 0.5, RunStatus::kFailed);
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.runs, 4);
  EXPECT_EQ(RenderMarkdown(t), testing::ReadFile(std::string(TB_TEST_DATA) + "/report_golden.md"));
  EXPECT_EQ(RenderLatex(t), testing::ReadFile(std::string(TB_TEST_DATA) + "/report_golden.tex"));
  EXPECT_EQ(RenderCsv(t), testing::ReadFile(std::string(TB_TEST_DATA) + "/report_golden.csv"));
}

TEST(ReportTest, RepeatedConfigCountsOnce) {
  RunStore store(":memory:");
  AddRun(store, "finetune", "wide", 0, "trained", 1.0, 0.1, RunStatus::kFinished);
  AddRun(store, "finetune", "wide", 0, "trained", 1.0, 0.1, RunStatus::kFinished);  // same config hash
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].runs, 1);
}

void AddVariantRun(RunStore& store, const std::string& arch, int64_t seed, const std::string& head,
                   const std::string& concept, double transfer) {
  NewRun r;
  r.suite = "nightly";
  r.method = "vector_space_alignment";
  r.dataset = "mnist";
  r.seed = seed;
  r.config = {{"dataset", "mnist"}, {"arch_a", arch}, {"arch_b", arch}, {"seed", seed}, {"head", head},
              {"source", "trained"}, {"concept_source", concept}, {"threads", 1 + seed}};
  const auto id = store.CreateRun(r);
  store.SetSummary(id, {{"transfer_rate", transfer}});
  store.FinishRun(id, RunStatus::kFinished, 0, "");
}

TEST(ReportTest, RowsSayWhatOptionOutsideTheColumnsSetsThemApart) {
  RunStore store(":memory:");
  for (int64_t seed = 0; seed < 2; ++seed) {
    AddVariantRun(store, "deep", seed, "keep", "source", 0.5);
    AddVariantRun(store, "wide", seed, "copy_row", "source", 0.7);
    AddVariantRun(store, "wide", seed, "keep", "source", 0.6);
    AddVariantRun(store, "wide", seed, "keep", "random", 0.2);        // a control beside its twin
    AddVariantRun(store, "wide", seed, "stitch_row", "random", 0.3);  // a control with no twin
  }
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 5u);
  // Sorted by pair, head, variant; threads differ between seeds and split nothing.
  EXPECT_EQ(t.rows[0].keys[1], "deep → deep");
  EXPECT_EQ(t.rows[0].variant, "");  // the most common value is not named
  EXPECT_EQ(t.rows[1].keys[3], "copy_row");
  EXPECT_EQ(t.rows[1].variant, "");
  EXPECT_EQ(t.rows[2].keys[3], "keep");
  EXPECT_EQ(t.rows[2].variant, "");
  EXPECT_EQ(t.rows[2].runs, 2);
  EXPECT_DOUBLE_EQ(t.rows[2].cells[0].mean, 0.6);
  EXPECT_EQ(t.rows[3].keys[3], "keep");
  EXPECT_EQ(t.rows[3].variant, "concept_source=random");
  EXPECT_DOUBLE_EQ(t.rows[3].cells[0].mean, 0.2);
  EXPECT_EQ(t.rows[4].keys[3], "stitch_row");
  EXPECT_EQ(t.rows[4].variant, "concept_source=random");
  const std::string md = RenderMarkdown(t);
  EXPECT_NE(md.find("| vector_space_alignment (concept_source=random) | stitch_row |"), std::string::npos) << md;
  const std::string csv = RenderCsv(t);
  EXPECT_NE(csv.find(",train.epochs,variant,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("vector_space_alignment,keep,trained,,,concept_source=random,0.2,"), std::string::npos) << csv;
}

TEST(ReportTest, TwinConfigsThatDifferOnlyInTheirMinorityGetNamedByTheDifference) {
  RunStore store(":memory:");
  AddVariantRun(store, "wide", 0, "keep", "source", 0.6);
  AddVariantRun(store, "wide", 0, "keep", "random", 0.2);  // a tie: with no declared value, both rows are named
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].variant, "concept_source=random");
  EXPECT_EQ(t.rows[1].variant, "concept_source=source");
}

// Review 19.2: on a tie the alphabet chose the unnamed row, so the random-concept control passed
// for the method and the method as declared was labelled a variant.
TEST(ReportTest, OnATieTheDeclaredValueIsTheUnnamedRow) {
  RunStore store(":memory:");
  AddVariantRun(store, "wide", 0, "keep", "source", 0.6);
  AddVariantRun(store, "wide", 0, "keep", "random", 0.2);
  for (bool bias : {true, false}) {
    NewRun r;
    r.suite = "nightly";
    r.method = "direct_copy";
    r.config = {{"dataset", "mnist"}, {"method", "direct_copy"}, {"arch_a", "wide"}, {"arch_b", "wide"},
                {"seed", 0}, {"source", "trained"}, {"bias", bias}};
    const auto id = store.CreateRun(r);
    store.SetSummary(id, {{"transfer_rate", bias ? 0.0 : 0.01}});
    store.FinishRun(id, RunStatus::kFinished, 0, "");
  }
  DeclaredOptions declared;
  declared.method["direct_copy"] = {{"bias", true}};
  declared.method["vector_space_alignment"] = {{"concept_source", "source"}, {"head", "keep"}};
  Table t = BuildTable(store, NightlyTableSpec("nightly", declared));
  ASSERT_EQ(t.rows.size(), 4u);
  std::map<std::string, double> by_label;
  for (const auto& row : t.rows) by_label[row.keys[2] + (row.variant.empty() ? "" : " (" + row.variant + ")")] = row.cells[0].mean;
  EXPECT_EQ(by_label, (std::map<std::string, double>{{"direct_copy", 0.0},
                                                     {"direct_copy (bias=false)", 0.01},
                                                     {"vector_space_alignment", 0.6},
                                                     {"vector_space_alignment (concept_source=random)", 0.2}}));
  // A tie the declared value is not part of still names every row.
  declared.method["direct_copy"] = {{"bias", "neither"}};
  Table other = BuildTable(store, NightlyTableSpec("nightly", declared));
  EXPECT_EQ(other.rows[0].variant, "bias=false");
  EXPECT_EQ(other.rows[1].variant, "bias=true");
}

// Review 19.9: LaTeX left { } ~ ^ \ raw, CSV did not quote \r, Markdown did not escape |.
TEST(ReportTest, EveryOutputEscapesEverySpecialCharacter) {
  const std::string nasty = "a^b~c{d}\\e_f%g&h#i$j|k\rl,m\"n";
  Table t;
  t.spec = NightlyTableSpec("nightly");
  t.spec.title = "suite " + nasty;
  TableRow row;
  row.keys = {"mnist", "wide → wide", "direct_copy", "–", "trained", "none", "5"};
  row.variant = "data.dir=" + nasty;
  row.cells = std::vector<Cell>(t.spec.metrics.size(), Cell{0.5, 0.0, 1});
  row.runs = 1;
  t.rows = {row};
  t.runs = 1;
  const std::string md = RenderMarkdown(t);
  EXPECT_NE(md.find("| direct_copy (data.dir=a^b~c{d}\\e_f%g&h#i$j\\|k l,m\"n) |"), std::string::npos) << md;
  EXPECT_EQ(md.find('\r'), std::string::npos);
  const std::string csv = RenderCsv(t);
  EXPECT_NE(csv.find(",\"data.dir=a^b~c{d}\\e_f%g&h#i$j|k\rl,m\"\"n\","), std::string::npos) << csv;
  const std::string tex = RenderLatex(t);
  const std::string escaped = "a\\textasciicircum{}b\\textasciitilde{}c\\{d\\}\\textbackslash{}e\\_f\\%g\\&h\\#i\\$j"
                              "\\textbar{}k l,m\"n";
  EXPECT_NE(tex.find("\\caption{suite " + escaped + ". Mean"), std::string::npos) << tex;
  EXPECT_NE(tex.find("direct\\_copy (data.dir=" + escaped + ")"), std::string::npos) << tex;
  // Other characters: the table's own as LaTeX, Latin-1 letters kept, the rest replaced.
  t.rows[0].variant = "data.dir=<é ≥ 日本>";
  EXPECT_NE(RenderLatex(t).find("data.dir=\\textless{}é $\\geq$ ??\\textgreater{}"), std::string::npos) << RenderLatex(t);
  // And it compiles.
  if (testing::RunCommand("command -v pdflatex").exit_code != 0) {
    GTEST_SKIP() << "pdflatex not found (scripts/setup installs texlive-latex-base and texlive-latex-recommended)";
  }
  testing::TempDir dir;
  testing::WriteFile(dir / "t.tex", "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + RenderLatex(t) +
                                    "\\end{document}\n");
  auto r = testing::RunCommand("cd " + dir.path() + " && pdflatex -interaction=nonstopmode -halt-on-error t.tex");
  EXPECT_EQ(r.exit_code, 0) << r.out.substr(r.out.size() > 3000 ? r.out.size() - 3000 : 0);
  EXPECT_TRUE(std::filesystem::exists(dir / "t.pdf"));
}

// The paper table: rows × columns of one metric, each cell one config group; never a pool.
TEST(ReportTest, PivotKnownAnswers) {
  RunStore store(":memory:");
  AddRun(store, "finetune", "wide", 0, "trained", 0.2, 0.9, RunStatus::kFinished);
  AddRun(store, "finetune", "wide", 1, "trained", 0.4, 0.9, RunStatus::kFinished);
  AddRun(store, "finetune", "deep", 0, "trained", 0.6, 0.9, RunStatus::kFinished);
  AddRun(store, "finetune", "deep", 1, "trained", 0.8, 0.9, RunStatus::kFinished);
  AddRun(store, "direct_copy", "wide", 0, "trained", 0.1, 0.9, RunStatus::kFinished);
  AddRun(store, "direct_copy", "wide", 1, "trained", 0.3, 0.9, RunStatus::kFinished);
  AddRun(store, "direct_copy", "wide", 2, "shuffled", 0.0, 0.9, RunStatus::kFinished);
  const Table t = BuildPivot(store, NightlyTableSpec("nightly"), ParsePivot("rows=method,cols=pair,value=transfer_rate"));
  ASSERT_EQ(t.spec.metrics.size(), 2u);
  EXPECT_EQ(t.spec.metrics[0].header, "deep → deep");
  EXPECT_EQ(t.spec.metrics[1].header, "wide → wide");
  std::string labels;
  for (const auto& r : t.rows) labels += r.keys[0] + " [" + r.variant + "] ";
  // direct_copy's two groups split evenly on source, with no declared default: both named.
  ASSERT_EQ(t.rows.size(), 3u) << labels;
  std::map<std::string, const TableRow*> rows;
  for (const auto& r : t.rows) rows[r.keys[0] + (r.variant.empty() ? "" : " (" + r.variant + ")")] = &r;
  ASSERT_EQ(rows.count("finetune"), 1u);
  ASSERT_EQ(rows.count("direct_copy (source=trained)"), 1u);
  ASSERT_EQ(rows.count("direct_copy (source=shuffled)"), 1u);
  EXPECT_NEAR(rows["finetune"]->cells[0].mean, 0.7, 1e-12);
  EXPECT_NEAR(rows["finetune"]->cells[1].mean, 0.3, 1e-12);
  EXPECT_EQ(rows["finetune"]->cells[1].n, 2);
  EXPECT_NEAR(rows["direct_copy (source=trained)"]->cells[1].mean, 0.2, 1e-12);
  EXPECT_EQ(rows["direct_copy (source=trained)"]->cells[0].n, 0);  // never ran on deep
  EXPECT_EQ(rows["direct_copy (source=shuffled)"]->cells[1].n, 1);
  EXPECT_EQ(t.runs, 7);
  // LaTeX: the best of each column in bold (transfer: higher is better; a column of one value has
  // none), the std in \scriptsize.
  const std::string tex = RenderLatex(t);
  EXPECT_NE(tex.find("finetune & 70.0{\\scriptsize${}\\pm{}$14.1} & \\textbf{30.0}{\\scriptsize${}\\pm{}$14.1} & 2"),
            std::string::npos) << tex;
  EXPECT_NE(tex.find("direct\\_copy (source=trained) & -- & 20.0{\\scriptsize${}\\pm{}$14.1} & 2"), std::string::npos)
      << tex;
  EXPECT_EQ(tex.find("wider than a portrait"), std::string::npos) << tex;  // three columns fit

  // --where selects runs; a key no run has, and malformed specs, are refused.
  TableSpec trained = NightlyTableSpec("nightly");
  trained.where = ParseWhere("source=trained");
  EXPECT_EQ(BuildPivot(store, trained, ParsePivot("rows=method,cols=pair,value=transfer_rate")).rows.size(), 2u);
  TableSpec typo = NightlyTableSpec("nightly");
  typo.where = ParseWhere("sorce=trained");
  EXPECT_THROW(BuildTable(store, typo), BadInput);
  EXPECT_THROW(ParsePivot("rows=method,cols=arch_a"), BadInput);
  EXPECT_THROW(ParsePivot("rows=method,cols=arch_a,value=transfer_rate,colour=red"), BadInput);
  EXPECT_THROW(ParseWhere("method"), BadInput);
  EXPECT_THROW(BuildPivot(store, NightlyTableSpec("nightly"), ParsePivot("rows=method,cols=arch_a,value=no_such_metric")),
               BadInput);
  EXPECT_THROW(BuildPivot(store, NightlyTableSpec("nightly"), ParsePivot("rows=method,cols=no_such_key,value=transfer_rate")),
               BadInput);
  // Review: values may hold commas; a filter that matches nothing is refused, naming what is
  // there; rows that do not name the method get it, so no row mixes methods.
  const auto items = ParseWhere("tasks=01,23,45,method=finetune");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].second, "01,23,45");
  EXPECT_EQ(items[1], (std::pair<std::string, std::string>{"method", "finetune"}));
  TableSpec nothing = NightlyTableSpec("nightly");
  nothing.where = ParseWhere("method=finetun");
  try {
    BuildTable(store, nothing);
    ADD_FAILURE() << "a filter that matches nothing was accepted";
  } catch (const BadInput& e) {
    EXPECT_NE(std::string(e.what()).find("direct_copy, finetune"), std::string::npos) << e.what();
  }
  const Table by_pair = BuildPivot(store, NightlyTableSpec("nightly"), ParsePivot("rows=source,cols=pair,value=transfer_rate"));
  ASSERT_EQ(by_pair.spec.group_keys, (std::vector<std::string>{"method", "source"}));
  for (const auto& row : by_pair.rows) EXPECT_EQ(row.keys.size(), 2u);
  // --columns keeps the named columns in their order.
  TableSpec two = NightlyTableSpec("nightly");
  SelectColumns(two, {"preservation", "transfer_rate"});
  ASSERT_EQ(two.metrics.size(), 2u);
  EXPECT_EQ(two.metrics[0].key, "preservation");
  EXPECT_THROW(SelectColumns(two, {"transfer"}), BadInput);
}

// Paper tables compile: a pivot and a long table (longtable across pages) under pdflatex, with
// no error and no overfull box.
TEST(ReportTest, PaperTablesCompileWithoutOverfullBoxes) {
  RunStore store(":memory:");
  for (int a = 0; a < 40; ++a) {
    for (int seed = 0; seed < 2; ++seed) {
      AddRun(store, "finetune", fmt::format("arch{}", a), seed, "trained", 0.01 * a, 0.5,
             RunStatus::kFinished);
      AddRun(store, "direct_copy", fmt::format("arch{}", a), seed, "trained", 0.02 * a, 0.4, RunStatus::kFinished);
    }
  }
  TableSpec narrow = NightlyTableSpec("nightly");
  SelectColumns(narrow, {"transfer_rate", "preservation"});
  narrow.group_keys = {"method", "arch_a"};
  narrow.group_headers = {"Method", "Model"};
  const Table long_table = BuildTable(store, narrow);
  ASSERT_EQ(long_table.rows.size(), 80u);
  const std::string tex_long = RenderLatex(long_table);
  EXPECT_NE(tex_long.find("\\begin{longtable}"), std::string::npos);
  EXPECT_NE(tex_long.find("\\endhead"), std::string::npos);
  const Table pivot = BuildPivot(store, NightlyTableSpec("nightly"), ParsePivot("rows=arch_a,cols=method,value=transfer_rate"));
  ASSERT_EQ(pivot.rows.size(), 40u);
  const std::string tex_pivot = RenderLatex(pivot);
  EXPECT_LT(LatexWidthPt(pivot), kLatexTextWidthPt);
  if (testing::RunCommand("command -v pdflatex").exit_code != 0) {
    GTEST_SKIP() << "pdflatex not found (scripts/setup installs texlive-latex-base and texlive-latex-recommended)";
  }
  testing::TempDir dir;
  testing::WriteFile(dir / "p.tex", "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{longtable}\n"
                                    "\\begin{document}\n" + tex_long + tex_pivot + "\\end{document}\n");
  auto r = testing::RunCommand("cd " + dir.path() + " && pdflatex -interaction=nonstopmode -halt-on-error p.tex && "
                               "pdflatex -interaction=nonstopmode -halt-on-error p.tex");
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(r.out.size() > 3000 ? r.out.size() - 3000 : 0);
  const std::string log = testing::ReadFile(dir / "p.log");
  EXPECT_EQ(log.find("Overfull \\hbox"), std::string::npos) << log.substr(log.find("Overfull"), 400);
  EXPECT_NE(log.find("Output written on p.pdf ("), std::string::npos);
}

TEST(ReportTest, ACellThatFewerRunsLoggedGivesItsOwnN) {
  RunStore store(":memory:");
  AddRun(store, "finetune", "wide", 0, "trained", 1.0, 0.2, RunStatus::kFinished);
  const auto id = AddRun(store, "finetune", "wide", 1, "trained", 1.0, 0.4, RunStatus::kFinished);
  store.SetSummary(id, {{"joint_acc", std::nan("")}});  // this seed's joint accuracy is missing
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 1u);
  const std::string md = RenderMarkdown(t);
  EXPECT_NE(md.find("| 30.0 ± 14.1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 50.0 (n=1) | 2 |"), std::string::npos) << md;
  EXPECT_NE(RenderLatex(t).find("50.0 ($n{=}1$) & 2"), std::string::npos) << RenderLatex(t);
}

TEST(ReportTest, WritesThreeFiles) {
  testing::TempDir dir;
  RunStore store(":memory:");
  AddRun(store, "finetune", "wide", 0, "trained", 1.0, 0.1, RunStatus::kFinished);
  auto paths = WriteTable(BuildTable(store, NightlyTableSpec("nightly")), dir / "reports", "nightly");
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0], dir / "reports/nightly.md");
  EXPECT_NE(testing::ReadFile(paths[2]).find("finetune"), std::string::npos);
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// Runs measured by older code (a lower runner_version) are superseded, not averaged in.
TEST(ReportTest, OnlyTheNewestCodesRunsCount) {
  RunStore store(":memory:");
  for (int64_t version : {1, 2}) {
    NewRun r;
    r.suite = "nightly";
    r.method = "finetune";
    r.config = {{"dataset", "mnist"}, {"method", "finetune"}, {"arch_a", "wide"}, {"arch_b", "wide"},
                {"seed", 0}, {"source", "trained"}, {"runner_version", version}};
    const auto id = store.CreateRun(r);
    store.SetSummary(id, {{"transfer_rate", version == 1 ? 0.1 : 0.9}});
    store.FinishRun(id, RunStatus::kFinished, 0, "");
  }
  Table t = BuildTable(store, NightlyTableSpec("nightly"));
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].runs, 1);
  EXPECT_DOUBLE_EQ(t.rows[0].cells[0].mean, 0.9);
  EXPECT_EQ(ReportRuns(store, "nightly").size(), 1u);
}

}  // namespace
}  // namespace tb
