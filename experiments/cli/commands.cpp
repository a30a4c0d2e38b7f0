#include "experiments/cli/commands.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/cli/compare_command.h"
#include "experiments/cli/console.h"
#include "experiments/cli/guarded.h"
#include "experiments/cli/loss_command.h"
#include "experiments/cli/zoo_command.h"
#include "experiments/cli/runner.h"
#include "experiments/cli/suite.h"
#include "experiments/data/dataset.h"
#include "experiments/losses/loss.h"
#include "experiments/methods/method.h"
#include "experiments/models/model.h"
#include "reporting/compare.h"
#include "reporting/html.h"
#include "reporting/report.h"
#include "reporting/surgery.h"
#include "store/errors.h"
#include "store/outbox.h"
#include "store/wandb.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

std::string DefaultResults() {
  if (const char* env = std::getenv("TRANSFERBENCH_RESULTS")) return env;
  return "results";
}

// The results directory, checked before anything runs: it, or the nearest part of it that
// exists, must be a directory (a path under a regular file is bad input, not a crash).
ResultPaths CheckedResults(const std::string& dir) {
  std::error_code ec;
  fs::path probe = fs::absolute(dir.empty() ? fs::path(".") : fs::path(dir), ec);
  while (!ec) {
    const fs::file_status st = fs::status(probe, ec);
    if (!ec && st.type() != fs::file_type::not_found) {
      if (!fs::is_directory(st)) {
        throw BadInput(fmt::format("--results {}: {} is not a directory (expected a directory for runs.db, zoo/ and "
                                   "reports/)",
                                   dir, probe.string()));
      }
      break;
    }
    ec.clear();
    if (probe == probe.parent_path()) break;
    probe = probe.parent_path();
  }
  return ResultPaths{dir};
}

Settings ParseSettings(const std::vector<std::string>& assignments, const std::string& config_file) {
  Settings out;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) throw BadInput(fmt::format("--config {}: cannot open file", config_file));
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw BadInput(fmt::format("--config {}: not valid JSON ({})", config_file, e.what()));
    }
    if (!doc.is_object()) throw BadInput(fmt::format("--config {}: expected a JSON object of options", config_file));
    for (const auto& [k, v] : doc.items()) out.emplace_back(k, v);
  }
  for (const auto& a : assignments) {
    auto [key, value] = SplitAssignment(a);
    out.emplace_back(key, nlohmann::json(value));
  }
  return out;
}

void PrintSummary(const RunOutcome& out) {
  for (const auto& [key, value] : out.summary) std::cout << fmt::format("{:<28} {:.6g}\n", key, value);
}

int ExitFor(const RunOutcome& out) { return out.status == RunStatus::kFinished ? 0 : out.exit_code; }


int DoRun(const std::string& method, const Settings& settings, const std::string& results, bool verbose,
          const std::string& suite, const std::vector<std::string>& tags, bool dry_run = false) {
  RunRequest request;
  request.method = method;
  request.settings = settings;
  request.suite = suite;
  request.tags = tags;
  if (dry_run) {
    // Checked and described; nothing is trained, stored or created.
    PreparedRun prepared = PrepareRun(request);
    std::cout << fmt::format("would run {} (config {})\n{}", prepared.label, prepared.config_hash.substr(0, 12),
                             prepared.protocol->DryRun(*prepared.method));
    return 0;
  }
  const ResultPaths paths = CheckedResults(results);
  PreparedRun prepared = PrepareRun(request);
  ExecuteOptions options;
  options.verbose = verbose;
  std::cerr << fmt::format("run {} ...\n", prepared.label);
  RunOutcome out = ExecuteRun(prepared, paths, options);
  std::cout << fmt::format("run {} {} in {}\n", out.run_id, ToString(out.status), FormatDuration(out.seconds));
  PrintSummary(out);
  if (out.status != RunStatus::kFinished) std::cerr << "error: " << out.error << "\n";
  return ExitFor(out);
}

void PrintRunsTable(const std::vector<RunRecord>& runs, RunStore& store) {
  std::cout << fmt::format("{:<8}  {:<8}  {:<20} {:<13} {:<24} {:>4}  {:<8}  {}\n", "id", "status", "method", "dataset",
                           "scenario", "seed", "control", "result");
  for (const auto& r : runs) {
    auto cfg = [&](const char* k) { return r.config.contains(k) ? r.config[k].get<std::string>() : std::string("?"); };
    // Surgery names its pair; the other protocols their scenario (classes, task sequence).
    const std::string scenario = r.config.contains("arch_b") ? cfg("arch_b") + " → " + cfg("arch_a") : r.scenario;
    std::cout << fmt::format("{:<8}  {:<8}  {:<20} {:<13} {:<24} {:>4}  {:<8}  {}\n", r.id.substr(0, 8), ToString(r.status),
                             r.method, r.dataset, scenario, r.seed, cfg("source"), Headline(store.Summary(r.id)));
  }
}

}  // namespace

int ExperimentMain(const std::string& method, int argc, char** argv, const Settings& presets, const std::string& title,
                   const std::string& extra_help) {
  CLI::App app{title.empty() ? fmt::format("exp_{}: one TransferBench run of method {} (the same as `transferbench run {}`)",
                                           method, method, method)
                             : title};
  std::vector<std::string> sets, tags;
  std::string config_file, results = DefaultResults(), suite;
  bool verbose = false, list_options = false, dry_run = false;
  app.add_option("--set", sets, "override an option: key=value (repeatable)");
  app.add_flag("-n,--dry-run", dry_run, "check the options and print what the run would do (e.g. a weight mapping "
               "with its shapes); run and store nothing");
  app.add_option("--config", config_file, "JSON object of options");
  app.add_option("--results", results, "results directory (env TRANSFERBENCH_RESULTS)");
  app.add_option("--suite", suite, "suite name recorded with the run");
  app.add_option("--tag", tags, "tag recorded with the run (repeatable)");
  app.add_flag("-v,--verbose", verbose, "echo progress and scalars on stderr");
  app.add_flag("--options", list_options, "list the options with their defaults");
  app.footer("\n" + extra_help + RunHelp(method));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (list_options) {
    std::cout << extra_help << RunHelp(method);
    return 0;
  }
  return Guarded([&] {
    Settings settings = presets;  // the binary's defaults first: --config and --set override them
    for (auto& s : ParseSettings(sets, config_file)) settings.push_back(std::move(s));
    return DoRun(method, settings, results, verbose, suite, tags, dry_run);
  });
}

Settings LossExperimentDefaults(const std::string& loss) {
  Settings s = {{"dataset", "mnist"}, {"zoo.grid", "merger"}, {"zoo.bin", 11}, {"classes_1", nlohmann::json::array({1, 7})},
                {"classes_2", nlohmann::json::array({3, 8})}};
  if (!Losses().Find(loss).make()->IsMetric()) s.emplace_back("loss", loss);
  return s;
}

int MultiCallMain(int argc, char** argv) {
  const std::string called = std::filesystem::path(argv[0]).filename().string();
  auto starts = [&](const std::string& prefix) { return called.rfind(prefix, 0) == 0; };
  try {
    if (starts("exp_loss_")) {
      const std::string loss = called.substr(9);
      const LossInfo& info = Losses().Find(loss);
      auto l = info.make();
      const std::string help = fmt::format(
          "loss {} — {}\nreference: {}\n{}loss options (set them as loss.options=k=v,k=v):\n{}\n", loss,
          info.display_name, info.reference,
          l->IsMetric() ? "a metric, not a gradient: the merger trains with its default loss and every merged model's "
                          "distance to the union model is logged with it\n"
                        : "",
          l->options().Help());
      return ExperimentMain("transformer_merge", argc, argv, LossExperimentDefaults(loss),
                            fmt::format("exp_loss_{}: the learned merger (transformer_merge) trained with loss {} on the "
                                        "`merger` zoo grid, evaluated on the pair 1,7 + 3,8 (the same as `transferbench "
                                        "run transformer_merge --set loss={}` with these defaults)", loss, loss, loss),
                            help);
    }
    if (starts("exp_")) {
      const std::string method = called.substr(4);
      Methods().Find(method);  // BadInput listing the methods
      return ExperimentMain(method, argc, argv);
    }
  } catch (const BadInput& e) {
    std::cerr << "error: " << called << ": " << e.what() << "\n";
    return 2;
  }
  std::cerr << fmt::format("error: {}: called by an unknown name (expected a link named exp_<method> or exp_loss_<loss>, "
                           "as build/bin holds for every method and loss)\n", called);
  return 2;
}

int TransferbenchMain(int argc, char** argv) {
  CLI::App app{"transferbench: reproducible benchmarks for moving knowledge between neural networks"};
  app.require_subcommand(1);
  // Global options work after the subcommand too (`transferbench nightly --results DIR`).
  app.fallthrough();
  std::string results = DefaultResults();
  app.add_option("--results", results, "results directory: runs.db, zoo/, reports/ (env TRANSFERBENCH_RESULTS)");
  std::vector<std::string> sets;
  std::string config_file;
  bool verbose = false;

  int code = 0;
  auto* run = app.add_subcommand("run", "run one method once");
  std::string method, suite_name;
  std::vector<std::string> tags;
  run->add_option("method", method, "method name (see `transferbench list methods`)")->required();
  run->add_option("--set", sets, "override an option: key=value (repeatable)");
  run->add_option("--config", config_file, "JSON object of options");
  run->add_option("--suite", suite_name, "suite name recorded with the run");
  run->add_option("--tag", tags, "tag recorded with the run (repeatable)");
  run->add_flag("-v,--verbose", verbose, "echo progress and scalars on stderr");
  bool run_dry = false;
  run->add_flag("-n,--dry-run", run_dry, "check the options and print what the run would do; run and store nothing");
  run->callback([&] {
    code = Guarded([&] {
      return DoRun(method, ParseSettings(sets, config_file), results, verbose, suite_name, tags, run_dry);
    });
  });

  auto* nightly = app.add_subcommand("nightly", "run the nightly suite (resumes: finished configs are skipped)");
  bool quick = false, full = false, dry_run = false;
  nightly->add_flag("--quick", quick, "the small version for tests (nightly_quick.json)");
  nightly->add_flag("--full", full, "the full version: whole surgery suite on both datasets, 5 seeds (nightly_full.json)");
  nightly->add_flag("-n,--dry-run", dry_run, "check every run's options and list what would run; run nothing");
  nightly->add_option("--set", sets, "override an option in every run: key=value");
  nightly->add_flag("-v,--verbose", verbose, "echo progress and scalars on stderr");
  std::string compare_to;
  nightly->add_option("--compare-to", compare_to,
                      "then gate on `compare REF <suite>` (REF: a suite, commit or FILE.db[:SUITE]); exit 3 on a regression");

  int64_t jobs = 1;
  std::string worker;
  nightly->add_option("--jobs", jobs, "worker processes on this machine, each with cores / N threads (default 1)");
  auto* suite_cmd = app.add_subcommand("suite", "run a suite file (resumes like nightly)");
  suite_cmd->add_option("--jobs", jobs, "worker processes on this machine, as nightly --jobs");
  suite_cmd->add_option("--worker", worker, "internal: run shard K/N of the suite and write no report")->group("");
  std::string suite_file;
  suite_cmd->add_option("file", suite_file, "suite JSON file")->required();
  suite_cmd->add_option("--set", sets, "override an option in every run: key=value");
  suite_cmd->add_flag("-v,--verbose", verbose, "echo progress and scalars on stderr");
  suite_cmd->add_flag("-n,--dry-run", dry_run, "check every run's options and list what would run; run nothing");
  suite_cmd->add_option("--compare-to", compare_to, "then gate on `compare REF <suite>`, as nightly does");

  auto run_suite = [&](const std::string& path) {
    code = Guarded([&] {
      SuiteOptions options;
      options.verbose = verbose;
      options.jobs = jobs;
      if (jobs < 1 || jobs > 256) throw BadInput(fmt::format("--jobs {}: expected 1..256", jobs));
      if (!worker.empty()) {
        const auto slash = worker.find('/');
        try {
          options.worker = std::stoll(worker.substr(0, slash));
          options.workers = slash == std::string::npos ? 0 : std::stoll(worker.substr(slash + 1));
        } catch (const std::exception&) {
          options.workers = 0;
        }
        if (options.workers < 1 || options.worker < 0 || options.worker >= options.workers) {
          throw BadInput(fmt::format("--worker {}: expected K/N with 0 <= K < N", worker));
        }
      }
      const ResultPaths paths = CheckedResults(results);
      Suite s = LoadSuite(path);
      std::cerr << fmt::format("suite {}: {} runs from {}\n", s.name, s.runs.size(), path);
      if (dry_run) {
        const auto settings = ParseSettings(sets, "");
        const std::string db = paths.store_path();
        std::unique_ptr<RunStore> store;
        if (fs::exists(db)) store = std::make_unique<RunStore>(db);
        int64_t done = 0;
        for (RunRequest r : s.runs) {
          r.settings = SuiteRunSettings(r.settings, settings, jobs);
          PreparedRun p = PrepareRun(r);
          const bool finished = store && store->FinishedRunWithHash(p.config_hash);
          done += finished ? 1 : 0;
          std::cout << (finished ? "done  " : "to run ") << p.label << "\n";
        }
        std::cout << fmt::format("suite {}: {} runs, {} already done, {} to run\n", s.name, s.runs.size(), done,
                                 static_cast<int64_t>(s.runs.size()) - done);
        return 0;
      }
      // A bad reference is refused before a night's work, not after it.
      if (!compare_to.empty()) LoadSide(compare_to, paths.store_path(), "");
      if (!worker.empty()) {
        SuiteResult r = RunSuite(s, paths, ParseSettings(sets, ""), options);
        return r.failed > 0 ? 1 : 0;
      }
      SuiteResult r = RunSuite(s, paths, ParseSettings(sets, ""), options);
      std::ifstream md(r.report_paths.front());
      std::cout << md.rdbuf() << "\n";
      std::cout << fmt::format("suite {}: {} ran ({} failed), {} already done, {} wall\n", s.name, r.ran, r.failed,
                               r.skipped, FormatDuration(r.seconds));
      std::cout << fmt::format("report: {}\n", fmt::join(r.report_paths, "  "));
      std::cout << fmt::format("runs: {}\n", paths.store_path());
      if (!compare_to.empty()) {
        CompareRequest gate;
        gate.base = compare_to;
        gate.next = "suite:" + s.name;
        gate.name = s.name + "-compare";
        const int gated = RunCompare(gate, results);
        if (r.failed == 0) return gated;
      }
      return r.failed > 0 ? 1 : 0;
    });
  };
  nightly->callback([&] {
    run_suite(SuitesDir() + (quick ? "/nightly_quick.json" : full ? "/nightly_full.json" : "/nightly.json"));
  });
  suite_cmd->callback([&] { run_suite(suite_file); });

  auto* report = app.add_subcommand("report", "write a suite's comparison tables (md, tex, csv) and print one");
  std::string report_suite = "nightly", format = "md";
  report->add_option("--suite", report_suite, "suite whose runs go in the table (\"\" for all)");
  report->add_option("--format", format, "format to print; html writes <suite>.html (self-contained, with plots) and prints its path")
      ->check(CLI::IsMember({"md", "tex", "csv", "html"}));
  std::string where, columns, pivot, table = "main";
  report->add_option("--where", where, "only runs with these config values: KEY=VALUE,KEY=VALUE (method, pair, any option)");
  report->add_option("--columns", columns, "only these metric columns, in this order: KEY,KEY (e.g. transfer_rate,preservation)");
  report->add_option("--pivot", pivot,
                     "rows=KEY[+KEY],cols=KEY,value=METRIC: the paper table (e.g. rows=method,cols=pair,value=transfer_rate)");
  report->add_option("--table", table, "the table --where/--columns/--pivot start from (default main)")
      ->check(CLI::IsMember({"main", "merge", "continual", "bootstrap"}));
  report->callback([&] {
    code = Guarded([&] {
      ResultPaths paths = CheckedResults(results);
      if (!report_suite.empty()) CheckSuiteName(report_suite);
      if (!fs::exists(paths.store_path())) throw BadInput(fmt::format("{}: no run store here (run something first)", paths.store_path()));
      RunStore store(paths.store_path());
      const std::string name = report_suite.empty() ? "all" : report_suite;
      if (!where.empty() || !columns.empty() || !pivot.empty()) {
        // One selected table (or its pivot), written as <name>-selected.* or <name>-pivot.*.
        if (format == "html") throw BadInput("--format html: the selected and pivot tables are md, tex or csv");
        TableSpec spec = table == "merge"       ? MergeTableSpec(report_suite, DeclaredDefaults())
                         : table == "continual" ? ContinualTableSpec(report_suite, DeclaredDefaults())
                         : table == "bootstrap" ? BootstrapTableSpec(report_suite, DeclaredDefaults())
                                                : NightlyTableSpec(report_suite, DeclaredDefaults());
        if (!where.empty()) spec.where = ParseWhere(where);
        std::vector<std::string> keys;
        for (size_t start = 0; !columns.empty() && start <= columns.size();) {
          const size_t end = std::min(columns.find(',', start), columns.size());
          keys.push_back(columns.substr(start, end - start));
          start = end + 1;
        }
        if (!keys.empty()) SelectColumns(spec, keys);
        const Table t = pivot.empty() ? BuildTable(store, spec) : BuildPivot(store, spec, ParsePivot(pivot));
        const auto written = WriteTable(t, paths.reports_dir(), name + (pivot.empty() ? "-selected" : "-pivot"));
        std::cout << (format == "tex" ? RenderLatex(t) : format == "csv" ? RenderCsv(t) : RenderMarkdown(t));
        if (LatexWidthPt(t) > kLatexTextWidthPt) {
          std::cerr << fmt::format("note: {} is about {:.0f} pt wide, wider than a portrait page ({:.0f} pt): narrow it "
                                   "with --columns, --where or --pivot\n", written[1], LatexWidthPt(t), kLatexTextWidthPt);
        }
        std::cerr << fmt::format("written: {}\n", fmt::join(written, "  "));
        return 0;
      }
      auto written = WriteSuiteReport(store, report_suite, paths.reports_dir(), name, DeclaredDefaults());
      if (format == "html") {
        const std::string page = WriteHtmlReport(store, report_suite, paths.reports_dir(), name, DeclaredDefaults());
        written.push_back(page);
        std::cout << page << "\n";
      } else {
        const std::string printed = format == "md" ? written[0] : format == "tex" ? written[1] : written[2];
        std::ifstream in(printed);
        std::cout << in.rdbuf();
      }
      std::cerr << fmt::format("written: {}\n", fmt::join(written, "  "));
      return 0;
    });
  });

  auto* ls = app.add_subcommand("ls", "list runs, newest first");
  std::string ls_suite, ls_method, ls_status;
  int ls_limit = 50;
  ls->add_option("--suite", ls_suite, "only this suite");
  ls->add_option("--method", ls_method, "only this method");
  ls->add_option("--status", ls_status, "only this status")->check(CLI::IsMember({"running", "finished", "failed", "crashed"}));
  ls->add_option("-n,--limit", ls_limit, "at most this many runs (0: all)");
  ls->callback([&] {
    code = Guarded([&] {
      ResultPaths paths = CheckedResults(results);
      if (!fs::exists(paths.store_path())) throw BadInput(fmt::format("{}: no run store here", paths.store_path()));
      RunStore store(paths.store_path());
      RunFilter f;
      if (!ls_suite.empty()) f.suite = ls_suite;
      if (!ls_method.empty()) f.method = ls_method;
      if (!ls_status.empty()) f.status = ParseRunStatus(ls_status);
      f.limit = ls_limit;
      PrintRunsTable(store.ListRuns(f), store);
      return 0;
    });
  });

  auto* show = app.add_subcommand("show", "show one run: config, environment, summary");
  std::string show_id;
  show->add_option("run", show_id, "run id or unique prefix")->required();
  show->callback([&] {
    code = Guarded([&] {
      const ResultPaths paths = CheckedResults(results);
      if (!fs::exists(paths.store_path())) throw BadInput(fmt::format("{}: no run store here", paths.store_path()));
      RunStore store(paths.store_path());
      auto r = store.GetRun(show_id);
      if (!r) throw BadInput(fmt::format("run '{}': no such run in {}", show_id, store.path()));
      std::cout << fmt::format("run       {}\nstatus    {}{}\nmethod    {}\nsuite     {}\nscenario  {}\ndataset   {}\n"
                               "seed      {}\nhost      {} (pid {})\ngit       {}{}\nconfig hash {}\n",
                               r->id, ToString(r->status),
                               r->exit_code ? fmt::format(" (exit code {})", *r->exit_code) : "", r->method, r->suite,
                               r->scenario, r->dataset, r->seed, r->host, r->pid, r->git_commit,
                               r->git_dirty ? " (dirty)" : "", r->config_hash);
      if (!r->error.empty()) std::cout << "error     " << r->error << "\n";
      if (!r->tags.empty()) std::cout << fmt::format("tags      {}\n", fmt::join(r->tags, ", "));
      std::cout << "config\n" << r->config.dump(2) << "\nenvironment\n" << r->environment.dump(2) << "\nsummary\n";
      for (const auto& [k, v] : store.Summary(r->id)) std::cout << fmt::format("  {:<28} {:.6g}\n", k, v);
      std::cout << fmt::format("metrics   {} rows\n", store.Metrics(r->id).size());
      return 0;
    });
  });

  auto* reproduce = app.add_subcommand("reproduce", "re-run a stored run's config and report any difference");
  std::string reproduce_id;
  reproduce->add_option("run", reproduce_id, "run id or unique prefix")->required();
  reproduce->callback([&] {
    code = Guarded([&] {
      ResultPaths paths = CheckedResults(results);
      if (!fs::exists(paths.store_path())) throw BadInput(fmt::format("{}: no run store here", paths.store_path()));
      RunStore store(paths.store_path());
      auto r = store.GetRun(reproduce_id);
      if (!r) throw BadInput(fmt::format("run '{}': no such run in {}", reproduce_id, store.path()));
      RunRequest request;
      request.method = r->method;
      request.suite = "reproduce";
      request.tags = {"reproduce-of:" + r->id};
      // The stored options (not what the protocol and runner added: method, dataset_sha256, ...).
      const std::vector<std::string> names = OptionNames(r->method);
      for (const auto& [k, v] : r->config.items()) {
        if (std::binary_search(names.begin(), names.end(), k)) request.settings.emplace_back(k, v);
      }
      PreparedRun prepared = PrepareRun(request);
      if (prepared.config_hash != r->config_hash) {
        std::cout << "note: the config hash differs (the dataset files or the defaults changed)\n";
      }
      RunOutcome out = ExecuteRun(prepared, paths, ExecuteOptions{});
      const auto before = store.Summary(r->id);
      int differences = 0;
      for (const auto& [k, v] : before) {
        if (k.rfind("time/", 0) == 0 || k.rfind("zoo/", 0) == 0) continue;  // wall times and cache hits vary
        auto it = out.summary.find(k);
        const bool same = it != out.summary.end() && (it->second == v || (std::isnan(it->second) && std::isnan(v)));
        if (!same) {
          ++differences;
          std::cout << fmt::format("DIFF {:<28} {:.17g} -> {}\n", k, v,
                                   it == out.summary.end() ? std::string("missing") : fmt::format("{:.17g}", it->second));
        }
      }
      // Where the two ran differently: a kernel, a thread count or a LibTorch changes float sums.
      if (const auto again = store.GetRun(out.run_id)) {
        std::vector<std::string> changed;
        auto show = [](const nlohmann::json& env, const std::string& key) {
          return env.contains(key) ? env.at(key).dump() : std::string("(not recorded)");
        };
        std::set<std::string> keys;
        for (const auto& [k, v] : r->environment.items()) keys.insert(k);
        for (const auto& [k, v] : again->environment.items()) keys.insert(k);
        for (const auto& k : keys) {
          if (show(r->environment, k) != show(again->environment, k)) {
            changed.push_back(fmt::format("{} {} -> {}", k, show(r->environment, k), show(again->environment, k)));
          }
        }
        if (r->git_commit != again->git_commit) changed.push_back(fmt::format("git {} -> {}", r->git_commit, again->git_commit));
        for (const auto& c : changed) std::cout << "ENV  " << c << "\n";
        if (differences > 0 && !changed.empty()) {
          std::cout << "note: the environment differs (above); results are bit-for-bit identical only with the same "
                       "BLAS kernel, threads, LibTorch and code (README, \"Reproducibility\")\n";
        }
      }
      std::cout << fmt::format("reproduce {} -> {}: {} differences\n", r->id.substr(0, 8), out.run_id.substr(0, 8), differences);
      return differences == 0 && out.status == RunStatus::kFinished ? 0 : 1;
    });
  });

  auto* sync = app.add_subcommand("sync", "send W&B whatever it has not acknowledged, exactly once");
  std::vector<std::string> sync_runs;
  bool sync_all = false;
  double sync_timeout = 300;
  sync->add_option("runs", sync_runs, "run ids or unique prefixes");
  sync->add_flag("--all", sync_all, "every run whose final state W&B has not acknowledged");
  sync->add_option("--set", sets, "a wandb.* option: key=value (e.g. wandb.project=P)");
  sync->add_option("--timeout", sync_timeout, "seconds to keep trying one run before leaving it for later");
  sync->callback([&] {
    code = Guarded([&] {
      std::map<std::string, std::string> overrides;
      for (const auto& a : sets) {
        auto [key, value] = SplitAssignment(a);
        if (key.rfind("wandb.", 0) != 0) throw BadInput(fmt::format("--set {}: sync takes only wandb.* options", a));
        overrides[key] = value;
      }
      WandbSettings settings = WandbSettings::Resolve(overrides);
      if (settings.mode == "disabled") {
        throw BadInput("WANDB_MODE=disabled: W&B is switched off (use online or offline to sync)");
      }
      if (settings.api_key.empty()) {
        throw BadInput(fmt::format("no W&B API key: set WANDB_API_KEY or add a ~/.netrc entry for {}", settings.base_url));
      }
      ResultPaths paths = CheckedResults(results);
      if (!fs::exists(paths.store_path())) throw BadInput(fmt::format("{}: no run store here", paths.store_path()));
      RunStore store(paths.store_path());
      std::vector<std::string> ids;
      if (sync_all) ids = Outbox(store, settings.Sink()).PendingRuns();
      for (const auto& r : sync_runs) {
        auto run = store.GetRun(r);
        if (!run) throw BadInput(fmt::format("run '{}': no such run in {}", r, store.path()));
        ids.push_back(run->id);
      }
      if (!sync_all && sync_runs.empty()) throw BadInput("sync: name the runs to send, or pass --all");
      WandbSync syncer(store, settings, fmt::format("{}:{}:sync", HostName(), getpid()));
      int64_t complete = 0, live = 0, pending = 0;
      for (const auto& id : ids) {
        SyncReport r;
        try {
          r = syncer.SyncRun(id, NowSeconds() + sync_timeout);
        } catch (const WandbFatalError& e) {
          std::cerr << fmt::format("error: wandb: {}\n", e.what());
          return 1;
        }
        const auto run = store.GetRun(id);
        std::string state = r.done ? "complete" : !r.leased ? "busy (another sender holds it)"
                                                : run->status == RunStatus::kRunning ? "live (sent what is committed)"
                                                                                     : "incomplete (timed out)";
        if (r.done) ++complete;
        else if (r.leased && run->status == RunStatus::kRunning) ++live;
        else ++pending;
        std::cout << fmt::format("{} -> {}: {} history lines, {} console lines{}{}; {}\n", id.substr(0, 8), r.remote,
                                 r.history_lines, r.console_lines, r.summary_sent ? ", summary" : "",
                                 r.final_sent ? fmt::format(", final state ({})", ToString(run->status)) : "", state);
      }
      const auto& c = syncer.client().counters();
      std::cout << fmt::format("sync: {} complete, {} live, {} left for later; {} requests, {} retried\n", complete, live,
                               pending, c.requests, c.retries);
      return pending == 0 ? 0 : 1;
    });
  });

  auto* list = app.add_subcommand("list", "list registered names: methods (with their protocol), protocols, losses, models, datasets");
  std::string what;
  list->add_option("what", what, "methods|protocols|losses|models|datasets")->required()->check(
      CLI::IsMember({"methods", "protocols", "losses", "models", "datasets"}));
  list->callback([&] {
    if (what == "methods") {
      for (const auto& n : Methods().Names()) std::cout << fmt::format("{:<30} {}\n", n, Methods().Find(n).make()->protocol());
      return;
    }
    if (what == "protocols") {
      for (const auto& n : Protocols().Names()) std::cout << fmt::format("{:<12} {}\n", n, Protocols().Find(n).description);
      return;
    }
    std::vector<std::string> names = what == "losses" ? Losses().Names()
                                     : what == "models" ? ModelNames()
                                                        : DatasetNames();
    for (const auto& n : names) std::cout << n << "\n";
  });

  AddZooCommand(app, results, code);
  AddLossCommand(app, code);
  AddCompareCommand(app, results, code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int exit = app.exit(e);
    return exit == 0 ? 0 : 2;
  }
  return code;
}

}  // namespace tb
