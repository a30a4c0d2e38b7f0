// The command-line tools as a user runs them: separate processes, real files.
#include <fstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <filesystem>

#include <gtest/gtest.h>

#include "store/run_store.h"
#include "tests/test_util.h"

namespace tb {
namespace {

using testing::RunCommand;

const std::string kBin = TB_BIN_DIR;

std::string Tb(const std::string& results, const std::string& args) {
  return kBin + "/transferbench --results " + results + " " + args;
}

int64_t CountRows(const std::string& db, const std::string& sql) {
  SQLite::Database d(db, SQLite::OPEN_READONLY);
  return d.execAndGet(sql).getInt64();
}

TEST(CliTest, HelpAndRegistries) {
  EXPECT_EQ(RunCommand(kBin + "/transferbench --help").exit_code, 0);
  auto methods = RunCommand(kBin + "/transferbench list methods");
  EXPECT_EQ(methods.exit_code, 0);
  // Each method with the protocol it runs under.
  std::string expected;
  for (const auto& [m, protocol] : std::vector<std::pair<std::string, std::string>>{
           {"cascade_transplant", "surgery"}, {"concept_injection", "surgery"}, {"cross_arch_alignment", "surgery"},
           {"direct_copy", "surgery"}, {"distillation", "bootstrap"}, {"embedding_transfer", "bootstrap"},
           {"ensemble", "merge"}, {"finetune", "surgery"}, {"fisher_merge", "merge"},
           {"init_control", "merge"}, {"joint_retrain", "continual"}, {"kan_refine", "merge"}, {"label_probe", "surgery"},
           {"linear_stitch", "surgery"}, {"mapped_distillation", "bootstrap"}, {"merge_continual", "continual"},
           {"mlp_refine", "merge"}, {"permutation_merge", "merge"}, {"preserved_concept_injection", "surgery"},
           {"random_init", "bootstrap"}, {"regmean", "merge"}, {"sequential_finetune", "continual"},
           {"svd_init", "bootstrap"}, {"task_arithmetic", "merge"}, {"ties_merge", "merge"}, {"transformer_merge", "merge"},
           {"union_retrain", "merge"}, {"vector_space_alignment", "surgery"}, {"weight_average", "merge"},
           {"weight_map", "bootstrap"}, {"zoo_mean", "merge"}}) {
    expected += m + std::string(31 - m.size(), ' ') + protocol + "\n";
  }
  EXPECT_EQ(methods.out, expected);
  auto protocols = RunCommand(kBin + "/transferbench list protocols");
  EXPECT_EQ(protocols.out.rfind("bootstrap    start a target architecture from a trained source", 0), 0u) << protocols.out;
  EXPECT_NE(protocols.out.find("\ncontinual    fold a class-incremental task sequence"), std::string::npos) << protocols.out;
  EXPECT_NE(protocols.out.find("\nmerge        make one model for C1 ∪ C2"), std::string::npos) << protocols.out;
  EXPECT_NE(protocols.out.find("\nsurgery      edit a target A with a source B"), std::string::npos) << protocols.out;
  EXPECT_EQ(RunCommand(kBin + "/transferbench list models").out,
            "cfc\ncnn2464\ndeep\nliquid_s4\nlstm\nmega\nssm\nsuperwide\nverydeep\nwide\nxlstm\n");
  EXPECT_EQ(RunCommand(kBin + "/transferbench list datasets").out, "fashion-mnist\nidx\nmnist\n");
  // Every weight-space loss has its experiment, exp_loss_<name> (a link to the multi-call tb_exp);
  // the output losses of distillation (cross_entropy, kd) train no merger.
  const std::vector<std::string> losses = {
      "autoregressive_mse", "bottleneck", "composite",      "contractive",        "contrastive",
      "cross_entropy",      "fft_difference", "fisher",     "gromov_wasserstein", "jacobian_frobenius",
      "jensen_shannon",     "kd",         "latent_consistency", "layerwise_normalized_mse", "mape",
      "mel_difference",     "ms_fid",     "mse",            "multipersistence",   "norm_difference",
      "persistence",        "quantile",   "sinkhorn",       "sliced_wasserstein"};
  std::string listed;
  for (const auto& l : losses) {
    listed += l + "\n";
    const bool output_loss = l == "cross_entropy" || l == "kd";
    EXPECT_EQ(std::filesystem::exists(kBin + "/exp_loss_" + l), !output_loss) << l;
  }
  EXPECT_EQ(RunCommand(kBin + "/transferbench list losses").out, listed);
  auto loss_help = RunCommand(kBin + "/exp_loss_quantile --help");
  EXPECT_EQ(loss_help.exit_code, 0);
  EXPECT_NE(loss_help.out.find("trained with loss quantile"), std::string::npos) << loss_help.out;
  EXPECT_NE(loss_help.out.find("loss options"), std::string::npos) << loss_help.out;
  EXPECT_NE(loss_help.out.find("the quantile, in (0, 1)"), std::string::npos) << loss_help.out;
  EXPECT_NE(loss_help.out.find("merger.d_model"), std::string::npos) << loss_help.out;
  EXPECT_NE(RunCommand(kBin + "/exp_loss_bottleneck --help").out.find("a metric, not a gradient"), std::string::npos);
  auto stray = RunCommand(kBin + "/tb_exp");
  EXPECT_EQ(stray.exit_code, 2);
  EXPECT_NE(stray.out.find("called by an unknown name"), std::string::npos) << stray.out;
  auto help = RunCommand(kBin + "/exp_finetune --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("steps"), std::string::npos);
  EXPECT_NE(help.out.find("train.epochs"), std::string::npos);
  EXPECT_NE(help.out.find("protocol: surgery ("), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("transfer classes: any number"), std::string::npos) << help.out;
}

TEST(CliTest, BadInputIsOneLineAndExitCode2) {
  testing::TempDir dir;
  struct Case {
    std::string command, message;
  };
  const std::vector<Case> cases = {
      {Tb(dir.path(), "run direct_copy --set stesp=3"), "error: unknown option 'stesp' (accepted: "},
      {Tb(dir.path(), "run nosuch"), "error: method 'nosuch': unknown (registered: cascade_transplant, concept_injection, "},
      {kBin + "/exp_direct_copy --results " + dir.path() + " --set seed=x", "error: seed=x: expected an integer\n"},
      {Tb(dir.path(), "run direct_copy --set dataset=cifar"), "error: dataset=cifar: expected one of fashion-mnist, idx, mnist\n"},
      {Tb(dir.path(), "run direct_copy --set seed"), "error: 'seed': expected key=value\n"},
      {Tb(dir.path(), "run direct_copy --set dataset=idx --set data.dir=/nonexistent"),
       "error: /nonexistent: no train-images-idx3-ubyte or train-images-idx3-ubyte.gz (expected an IDX dataset directory)\n"},
      {Tb(dir.path(), "ls"), "error: " + dir.path() + "/runs.db: no run store here\n"},
      {Tb(dir.path(), "suite /nonexistent.json"), "error: /nonexistent.json: cannot open suite file\n"},
      // Review 19.4, 19.6, 19.7, 19.8: found only after training, or never.
      {Tb(dir.path(), "run direct_copy --set calibrate.threshold=nan"), "error: calibrate.threshold=nan: expected a finite number\n"},
      {Tb(dir.path(), "run direct_copy --set train.lr=inf"), "error: train.lr=inf: expected a finite number\n"},
      {Tb(dir.path(), "run direct_copy --set calibrate=control --set train.val_fraction=0"),
       "error: calibrate=control with train.val_fraction=0: calibration chooses its shift on A's validation data"},
      {Tb(dir.path(), "run direct_copy --suite team/smoke"), "error: suite name 'team/smoke': expected letters, digits"},
      {Tb(dir.path(), "report --suite ../../escaped"), "error: suite name '../../escaped': expected letters, digits"},
      {Tb(dir / "not-a-dir/results", "run direct_copy"),
       "error: --results " + dir / "not-a-dir/results" + ": " + dir / "not-a-dir" + " is not a directory"},
      {Tb(dir / "not-a-dir/results", "ls"),
       "error: --results " + dir / "not-a-dir/results" + ": " + dir / "not-a-dir" + " is not a directory"},
      {Tb(dir.path(), "suite " + dir / "slash.json"), "error: " + dir / "slash.json" + ": suite name 'team/smoke'"},
      {Tb(dir.path(), "run direct_copy --suite all"), "error: suite name 'all': reserved"},
      {Tb(dir.path(), "run direct_copy --suite nightly-claims"), "error: suite name 'nightly-claims': reserved"},
      // The learned merger: it needs a grid, a held-out pair and a training loss.
      {Tb(dir.path(), "run transformer_merge --set dataset=mnist"),
       "error: transformer_merge: learns from a zoo grid's models (expected zoo.grid=NAME"},
      {Tb(dir.path(), "run transformer_merge --set dataset=mnist --set zoo.grid=merger --set classes_1=0,1 --set classes_2=2,3"),
       "error: classes_1=0,1 classes_2=2,3: their union 0123 is in the merger's val split (expected a test pair"},
      {Tb(dir.path(), "run zoo_mean --set dataset=mnist --set zoo.grid=merger --set split.test_pairs=01+12 --set classes_1=1,7 --set classes_2=3,8"),
       "error: split.test_pairs=01+12: '01+12': expected class pairs like 01+23"},
      {Tb(dir.path(), "run transformer_merge --set dataset=mnist --set zoo.grid=merger --set loss=nosuch --set classes_1=1,7 --set classes_2=3,8"),
       "error: loss 'nosuch': unknown (registered: "},
      {Tb(dir.path(), "run transformer_merge --set dataset=mnist --set zoo.grid=merger --set merger.heads=5 --set classes_1=1,7 --set classes_2=3,8"),
       "error: merger.heads=5: expected a divisor of merger.d_model=64"},
      {kBin + "/exp_loss_mse --results " + dir.path() + " --set merger.epochs=0", "error: merger.epochs=0: expected 1..100000\n"},
  };
  testing::WriteFile(dir / "not-a-dir", "a regular file");
  testing::WriteFile(dir / "slash.json", R"({"name": "team/smoke", "matrix": [{"method": "direct_copy"}]})");
  for (const auto& c : cases) {
    auto r = RunCommand(c.command);
    EXPECT_EQ(r.exit_code, 2) << c.command << "\n" << r.out;
    EXPECT_EQ(r.out.rfind(c.message, 0), 0u) << c.command << "\n" << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  }
  auto unknown_flag = RunCommand(Tb(dir.path(), "run direct_copy --frobnicate"));
  EXPECT_EQ(unknown_flag.exit_code, 2);
  // Nothing was written anywhere: no store, and no report outside the results directory.
  EXPECT_FALSE(std::filesystem::exists(dir / "runs.db"));
  EXPECT_FALSE(std::filesystem::exists(dir / "../escaped.md"));
}

// The quick nightly suite end to end: database, reports, resume, show, reproduce; and bad
// input afterwards leaves the stored runs as they were.
TEST(CliTest, QuickNightlyEndToEnd) {
  testing::TempDir dir;
  auto first = RunCommand(Tb(dir.path(), "nightly --quick"));
  ASSERT_EQ(first.exit_code, 0) << first.out;
  const std::string db = dir / "runs.db";
  // 16 surgery runs, 9 merge runs (every method and reference), 3 continual runs, 2 bootstrap runs.
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs WHERE suite = 'nightly-quick' AND status = 'finished'"), 30);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs WHERE status != 'finished'"), 0);
  // Glossary metrics in every run's summary; A and B trained once per dataset x arch.
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM summary WHERE key IN ('transfer_rate', 'preservation', "
                          "'acc_before', 'acc_after', 'degradation', 'false_transfer', 'joint_acc') AND run_id IN "
                          "(SELECT id FROM runs WHERE method IN ('direct_copy', 'finetune'))"), 16 * 7);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM summary WHERE key IN ('iid_acc', 'ood_acc', 'shift_acc', "
                          "'normalized_acc', 'joint_acc', 'per_task_acc', 'collapse')"), 9 * 7 + 16);  // + surgery's joint_acc
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM summary WHERE key IN ('avg_acc', 'forgetting_max', "
                          "'forgetting_first', 'bwt', 'fwt', 'avg_acc_task', 'fwt_task')"), 3 * 7);
  // Zoo: A and B once per dataset x arch (8); parents and union model of the merge config (3);
  // the continual config's tasks 23 and 45 and the joint 0123 and 012345 (4: task 01 is the
  // merge config's first parent, the same request); the bootstrap config's lstm32 source (1).
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM models"), 16);
  EXPECT_GT(CountRows(db, "SELECT COUNT(*) FROM metrics"), 0);
  for (const char* ext : {"md", "tex", "csv"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / (std::string("reports/nightly-quick.") + ext))) << ext;
  }
  const std::string md = testing::ReadFile(dir / "reports/nightly-quick.md");
  EXPECT_NE(md.find("| mnist | wide → wide | finetune | – | trained | none | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| fashion-mnist | verydeep → verydeep | direct_copy | – | shuffled | none | 1 |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("16 finished runs"), std::string::npos) << md;
  // The merge and continual tables, in the Markdown and in their own files.
  EXPECT_NE(md.find("| mnist | weight_average | shared | trained |"), std::string::npos) << md;
  EXPECT_NE(md.find("| mnist | merge_continual | weight_average | 01,23,45 | trained |"), std::string::npos) << md;
  EXPECT_NE(md.find("| fashion-mnist | lstm32 → cfc32 | weight_map | trained |"), std::string::npos) << md;
  for (const char* file : {"nightly-quick-merge.md", "nightly-quick-merge.tex", "nightly-quick-merge.csv",
                           "nightly-quick-continual.md", "nightly-quick-continual.tex", "nightly-quick-continual.csv",
                           "nightly-quick-bootstrap.md", "nightly-quick-bootstrap.tex", "nightly-quick-bootstrap.csv"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / (std::string("reports/") + file))) << file;
  }
  EXPECT_NE(first.out.find("report: " + dir.path() + "/reports/nightly-quick.md"), std::string::npos);

  // Resume: everything is done already.
  auto again = RunCommand(Tb(dir.path(), "nightly --quick"));
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("0 ran (0 failed), 30 already done"), std::string::npos) << again.out;
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs"), 30);

  // Global options after the subcommand, as users type them.
  auto after = RunCommand(kBin + "/transferbench nightly --quick --results " + dir.path());
  ASSERT_EQ(after.exit_code, 0) << after.out;
  EXPECT_NE(after.out.find("0 ran (0 failed), 30 already done"), std::string::npos) << after.out;

  // The regression gate on real stores: a night against itself is unchanged (exit 0); against a
  // copy with direct_copy's transfer rate 5 points lower on every run, the copy regressed (exit
  // 3) and this night improved on it; a bad side is exit 2, before any run.
  {
    auto same = RunCommand(Tb(dir.path(), "compare nightly-quick nightly-quick"));
    EXPECT_EQ(same.exit_code, 0) << same.out;
    EXPECT_NE(same.out.find("No regression"), std::string::npos) << same.out;
    const std::string worse = dir / "worse.db";
    {
      SQLite::Database w(db, SQLite::OPEN_READWRITE);
      w.exec("VACUUM INTO '" + worse + "'");
    }
    {
      SQLite::Database w(worse, SQLite::OPEN_READWRITE);
      w.exec("UPDATE summary SET value = value - 0.05 - 0.001 * (SELECT seed FROM runs WHERE runs.id = run_id) "
             "WHERE key = 'transfer_rate' AND run_id IN (SELECT id FROM runs WHERE method = 'direct_copy')");
    }
    auto regressed = RunCommand(Tb(dir.path(), "compare nightly-quick " + worse + ":nightly-quick"));
    EXPECT_EQ(regressed.exit_code, 3) << regressed.out;
    EXPECT_NE(regressed.out.find("direct_copy"), std::string::npos) << regressed.out;
    EXPECT_NE(regressed.out.find("transfer_rate"), std::string::npos) << regressed.out;
    for (const char* ext : {"md", "csv", "json"}) {
      EXPECT_TRUE(std::filesystem::exists(dir / (std::string("reports/compare.") + ext))) << ext;
    }
    auto improved = RunCommand(Tb(dir.path(), "nightly --quick --compare-to " + worse + ":nightly-quick"));
    EXPECT_EQ(improved.exit_code, 0) << improved.out;
    EXPECT_TRUE(std::filesystem::exists(dir / "reports/nightly-quick-compare.md"));
    const int64_t before = CountRows(db, "SELECT COUNT(*) FROM runs");
    auto missing = RunCommand(Tb(dir.path(), "nightly --quick --compare-to " + (dir / "nowhere.db")));
    EXPECT_EQ(missing.exit_code, 2) << missing.out;
    EXPECT_FALSE(std::filesystem::exists(dir / "nowhere.db"));
    EXPECT_EQ(RunCommand(Tb(dir.path(), "compare nightly-quick no-such-suite")).exit_code, 2);
    EXPECT_EQ(RunCommand(Tb(dir.path(), "compare nightly-quick nightly-quick --threshold transfer_rate=x")).exit_code, 2);
    EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs"), before);
  }

  // show and reproduce a stored run: identical metrics.
  SQLite::Database d(db, SQLite::OPEN_READONLY);
  const std::string id = d.execAndGet("SELECT id FROM runs WHERE method = 'finetune' LIMIT 1").getString();
  auto show = RunCommand(Tb(dir.path(), "show " + id.substr(0, 8)));
  EXPECT_EQ(show.exit_code, 0);
  EXPECT_NE(show.out.find("\"blas\""), std::string::npos);
  auto reproduce = RunCommand(Tb(dir.path(), "reproduce " + id));
  EXPECT_EQ(reproduce.exit_code, 0) << reproduce.out;
  EXPECT_NE(reproduce.out.find(": 0 differences"), std::string::npos) << reproduce.out;
  EXPECT_EQ(reproduce.out.find("ENV "), std::string::npos) << reproduce.out;  // same machine, same environment
  // Review 19.11: another OpenBLAS kernel is named, in the environment and in reproduce.
  const std::string core = d.execAndGet("SELECT json_extract(environment, '$.blas_core') FROM runs LIMIT 1").getString();
  if (!core.empty()) {
    const std::string other = core == "Sandybridge" ? "Haswell" : "Sandybridge";
    auto kernel = RunCommand("OPENBLAS_CORETYPE=" + other + " " + Tb(dir.path(), "reproduce " + id));
    EXPECT_NE(kernel.out.find("ENV  blas_core \"" + core + "\" -> \"" + other + "\""), std::string::npos) << kernel.out;
    EXPECT_NE(kernel.out.find("ENV  blas_variables"), std::string::npos) << kernel.out;
  }

  // Bad input now: exit 2, and nothing stored changes.
  const int64_t runs_before = CountRows(db, "SELECT COUNT(*) FROM runs");
  const int64_t metrics_before = CountRows(db, "SELECT COUNT(*) FROM metrics");
  EXPECT_EQ(RunCommand(Tb(dir.path(), "run finetune --set steps=-x")).exit_code, 2);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs"), runs_before);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM metrics"), metrics_before);
  // Review 19.6: with a store here, a suite name with a path in it wrote outside the results.
  auto escape = RunCommand(Tb(dir.path(), "report --suite ../escaped"));
  EXPECT_EQ(escape.exit_code, 2) << escape.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "escaped.md"));
  EXPECT_FALSE(std::filesystem::exists(dir / "../escaped.md"));
  auto report = RunCommand(Tb(dir.path(), "report --suite nightly-quick --format csv"));
  EXPECT_EQ(report.exit_code, 0);
  EXPECT_NE(report.out.find("dataset,pair,method,head,source,calibrate,train.epochs,variant,transfer_rate_mean"),
            std::string::npos);

  // Paper tables: a pivot of one metric, a selection; bad specs are exit 2.
  auto pivot = RunCommand(Tb(dir.path(), "report --suite nightly-quick --pivot rows=method,cols=pair,value=transfer_rate "
                                         "--where dataset=mnist --format tex"));
  EXPECT_EQ(pivot.exit_code, 0) << pivot.out;
  EXPECT_NE(pivot.out.find("transfer\\_rate by method and pair"), std::string::npos) << pivot.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "reports/nightly-quick-pivot.tex"));
  auto selected = RunCommand(Tb(dir.path(), "report --suite nightly-quick --columns preservation,transfer_rate"));
  EXPECT_EQ(selected.exit_code, 0) << selected.out;
  EXPECT_NE(selected.out.find("| Preservation % | Transfer % | n |"), std::string::npos) << selected.out;
  EXPECT_EQ(RunCommand(Tb(dir.path(), "report --suite nightly-quick --pivot rows=method")).exit_code, 2);
  EXPECT_EQ(RunCommand(Tb(dir.path(), "report --suite nightly-quick --columns transfer")).exit_code, 2);
  EXPECT_EQ(RunCommand(Tb(dir.path(), "report --suite nightly-quick --where nokey=1")).exit_code, 2);

  // A second suite that shares two configs with the first finds them done, and its report
  // stands on them.
  const std::string overlap = dir / "overlap.json";
  std::ofstream(overlap) << R"({"name": "overlap", "set": {"train.epochs": 1, "data.train_per_class": 300,
    "classes_a": [0, 1, 2, 3], "classes_b": [2, 3, 4, 5], "transfer": [4]},
    "matrix": [{"dataset": "mnist", "arch": "wide", "seed": 0, "method": "finetune", "source": ["trained", "shuffled"]}]})";
  const int64_t runs_before_overlap = CountRows(db, "SELECT COUNT(*) FROM runs");
  auto second = RunCommand(Tb(dir.path(), "suite " + overlap));
  ASSERT_EQ(second.exit_code, 0) << second.out;
  EXPECT_NE(second.out.find("0 ran (0 failed), 2 already done"), std::string::npos) << second.out;
  const std::string overlap_md = testing::ReadFile(dir / "reports/overlap.md");
  EXPECT_NE(overlap_md.find("2 finished runs"), std::string::npos) << overlap_md;
  EXPECT_NE(overlap_md.find("| mnist | wide → wide | finetune | – | shuffled | none | 1 |"), std::string::npos)
      << overlap_md;
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs"), runs_before_overlap);  // nothing ran twice
}

// `--jobs N`: N worker processes share a suite's configs (each config run once, by one of them,
// with cores / N threads), the parent writes the report; a resume finds everything done.
TEST(CliTest, JobsShareTheSuiteAcrossWorkerProcesses) {
  testing::TempDir dir;
  auto first = RunCommand(Tb(dir.path(), "nightly --quick --jobs 2"));
  ASSERT_EQ(first.exit_code, 0) << first.out;
  EXPECT_NE(first.out.find("30 runs in 2 worker processes"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("30 ran (0 failed), 0 already done"), std::string::npos) << first.out;
  const std::string db = dir / "runs.db";
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 30);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(DISTINCT config_hash) FROM runs"), 30);  // none ran twice
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs WHERE json_extract(config, '$.threads') != "
                          "MAX(1, " + std::to_string(testing::UsableCores() / 2) + ")"), 0);
  EXPECT_TRUE(std::filesystem::exists(dir / "reports/nightly-quick.md"));
  auto again = RunCommand(Tb(dir.path(), "nightly --quick --jobs 2"));
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("0 ran (0 failed), 30 already done"), std::string::npos) << again.out;
  EXPECT_EQ(RunCommand(Tb(dir.path(), "nightly --quick --jobs 0")).exit_code, 2);
  auto bad_worker = RunCommand(Tb(dir.path(), "suite no-such-suite.json --worker 3/2"));
  EXPECT_EQ(bad_worker.exit_code, 2);
  EXPECT_NE(bad_worker.out.find("--worker 3/2: expected K/N"), std::string::npos) << bad_worker.out;
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM runs"), 30);
}

// `loss NAME --a --b`: a registered loss on two vectors from files, and its bad input.
TEST(CliTest, LossEvaluatesOneLossOnTwoVectorFiles) {
  testing::TempDir dir;
  std::ofstream(dir / "a.txt") << "1\n2\n\n3\n4\n";
  std::ofstream(dir / "b.txt") << "0\n2\n5\n4\n";
  std::ofstream(dir / "bad.txt") << "1\n2x\n";
  const std::string ab = " --a " + (dir / "a.txt") + " --b " + (dir / "b.txt");
  auto q = RunCommand(Tb(dir.path(), "loss quantile" + ab + " --set q=0.5"));
  EXPECT_EQ(q.exit_code, 0) << q.out;
  EXPECT_EQ(q.out, "0.375\n");  // half the MAE of the differences 1, 0, -2, 0
  auto layered = RunCommand(Tb(dir.path(), "loss layerwise_normalized_mse" + ab + " --layers 0,2,4 --set normalize=none"));
  EXPECT_EQ(layered.out, "2.5\n") << layered.out;
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"loss no_such" + ab, "loss 'no_such': unknown"},
           {"loss mse --a " + (dir / "bad.txt") + " --b " + (dir / "b.txt"), "bad.txt:2: '2x': expected one finite number"},
           {"loss mse --a " + (dir / "a.txt") + " --b " + (dir / "bad2.txt"), "bad2.txt: cannot open"},
           {"loss quantile" + ab + " --set q=2", "q=2: expected a value in (0, 1)"},
           {"loss mse --a " + (dir / "a.txt") + " --b " + (dir / "a.txt") + " --layers 0,9", "layer bounds 0,9"}}) {
    auto r = RunCommand(Tb(dir.path(), args));
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << r.out;
  }
}

// A suite whose merge runs name a zoo grid builds it first; the runs take their parents from its
// checkpoints (the very models: their accuracy is the grid's), and the report adds the zoo table.
TEST(CliTest, MergeRunsTakeTheirParentsFromAZooGrid) {
  testing::TempDir dir;
  const std::string grid = dir / "tiny.json";
  std::ofstream(grid) << R"({"name": "tiny", "dataset": "mnist", "arch": "cnn2464", "data.train_per_class": 100,
    "subsets": [[0, 1], [2, 3], [0, 1, 2, 3]], "activations": ["relu"], "inits": ["kaiming_uniform"],
    "seeds": [0, 1], "checkpoints": [2, 3], "train": {"batch_size": 8}})";
  const std::string pair = " --set zoo.grid=" + grid + " --set classes_1=0,1 --set classes_2=2,3 --set finetune.epochs=0,1";
  // Bad input: one line naming the value, exit 2.
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"run weight_average --set zoo.grid=no_such_grid", "zoo grid 'no_such_grid': no such file"},
           {"run weight_average" + pair + " --set zoo.bin=4", "zoo.bin=4: zoo grid tiny has no such models (it has checkpoints 2,3)"},
           {"run weight_average" + pair + " --set classes_2=4,5", "classes_2=4,5: zoo grid tiny has no such models"},
           {"run weight_average" + pair + " --set activation=tanh", "activation=tanh: zoo grid tiny has no such models"},
           {"run weight_average --set zoo.bin=11", "zoo.bin=11: only with zoo.grid"},
           {"run weight_average" + pair + " --set seed=2", "seed=2: zoo grid tiny has no models of that seed (its seeds: 0,1)"},
           {"run weight_average" + pair + " --set seed=1 --set parents_init=different",
            "seed=1: parents_init=different takes W2 from the grid's next seed"},
           {"run weight_average" + pair, "no model on classes 0,1 (relu kaiming_uniform seed 0) at epoch bin 2"}}) {
    auto r = RunCommand(Tb(dir / "refused", args));
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(message), std::string::npos) << r.out;
  }
  // Refused before a run is stored: only the last (the grid is not built yet) got as far as a run.
  EXPECT_EQ(CountRows(dir / "refused/runs.db", "SELECT COUNT(*) FROM runs"), 1);
  const std::string suite = dir / "grid_suite.json";
  std::ofstream(suite) << R"({"name": "gridded", "set": {"zoo.grid": ")" + grid + R"(", "classes_1": [0, 1],
    "classes_2": [2, 3], "finetune.epochs": [0, 1]},
    "matrix": [{"method": ["weight_average", "ensemble"], "parents_init": ["shared", "different"], "zoo.bin": [2, 3]}]})";
  // From a results directory that does not exist yet, as a first nightly's.
  const std::string results = dir / "results";
  auto r = RunCommand(Tb(results, "suite " + suite));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("building zoo grid tiny first (6 units)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 ran (0 failed)"), std::string::npos) << r.out;
  const std::string db = results + "/runs.db";
  // W1 is the grid's checkpoint of {0, 1} (seed 0) at the run's bin: its accuracy, to the last bit.
  for (int bin : {2, 3}) {
    SQLite::Database d(db, SQLite::OPEN_READONLY);
    const double grid_acc = d.execAndGet(fmt::format(
        "SELECT json_extract(metrics, '$.test_acc') FROM models WHERE json_extract(spec, '$.kind') = 'zoo_grid_checkpoint' "
        "AND json_extract(spec, '$.classes') = '[0,1]' AND json_extract(spec, '$.seed') = 0 AND json_extract(spec, '$.bin') = {}",
        bin)).getDouble();
    EXPECT_GT(grid_acc, 0.1) << bin;  // a trained model: an equality of zeros would prove nothing
    SQLite::Statement q(d, fmt::format("SELECT s.value FROM summary s JOIN runs r ON r.id = s.run_id WHERE s.key = 'parent1_acc' "
                                       "AND json_extract(r.config, '$.\"zoo.bin\"') = {}", bin));
    int n = 0;
    while (q.executeStep()) {
      EXPECT_EQ(q.getColumn(0).getDouble(), grid_acc) << bin;
      ++n;
    }
    EXPECT_EQ(n, 4) << bin;
  }
  // A different initial checkpoint: W2 from the grid's next seed, so the parents differ at init.
  EXPECT_EQ(CountRows(db, "SELECT COUNT(DISTINCT s.value) FROM summary s JOIN runs r ON r.id = s.run_id "
                          "WHERE s.key = 'parent2_acc' AND json_extract(r.config, '$.\"zoo.bin\"') = 3"), 2);
  EXPECT_EQ(CountRows(db, "SELECT COUNT(*) FROM summary WHERE key = 'zoo/parent1_trained' AND value != 0"), 0);
  const std::string zoo_md = testing::ReadFile(results + "/reports/gridded-zoo.md");
  EXPECT_NE(zoo_md.find("| tiny | relu | kaiming_uniform | 2 |"), std::string::npos) << zoo_md;
  EXPECT_NE(zoo_md.find("12 zoo checkpoints"), std::string::npos) << zoo_md;
  const std::string md = testing::ReadFile(results + "/reports/gridded.md");
  EXPECT_NE(md.find("## Zoo: accuracy by activation"), std::string::npos) << md;
  EXPECT_NE(md.find("zoo.bin=3"), std::string::npos) << md;  // the bins are rows apart, not pooled
  // Resumes: the grid is built, the runs are done.
  auto again = RunCommand(Tb(results, "suite " + suite));
  EXPECT_EQ(again.out.find("building zoo grid"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("0 ran (0 failed), 8 already done"), std::string::npos) << again.out;
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// With the reference BLAS loaded, a run warns once on stderr and records it.
TEST(CliTest, WarnsOnceAboutTheReferenceBlas) {
  const std::string reference_dir = "/usr/lib/x86_64-linux-gnu/blas";
  if (!std::filesystem::exists(reference_dir + "/libblas.so.3")) GTEST_SKIP() << "reference BLAS not installed";
  testing::TempDir dir;
  auto r = RunCommand("LD_LIBRARY_PATH=" + reference_dir + " " +
                      Tb(dir.path(), "run direct_copy --set dataset=mnist --set data.train_per_class=20 "
                                     "--set train.epochs=1 --set arch=verydeep"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  size_t count = 0;
  for (size_t pos = 0; (pos = r.out.find("warning: LibTorch is using the reference BLAS", pos)) != std::string::npos; ++pos) ++count;
  EXPECT_EQ(count, 1u) << r.out;
  SQLite::Database d(dir / "runs.db", SQLite::OPEN_READONLY);
  EXPECT_EQ(d.execAndGet("SELECT json_extract(environment, '$.blas') FROM runs").getString(), "reference");
  auto normal = RunCommand(Tb(dir.path(), "run direct_copy --set dataset=mnist --set data.train_per_class=20 "
                                          "--set train.epochs=1 --set arch=verydeep --set seed=1"));
  EXPECT_EQ(normal.out.find("reference BLAS"), std::string::npos) << normal.out;
}

}  // namespace
}  // namespace tb

namespace tb {
namespace {

// exp_weight_map --dry-run: the mapping with its shapes, nothing stored; a bad table is exit 2.
TEST(CliTest, WeightMapDryRunPrintsTheMappingAndStoresNothing) {
  testing::TempDir dir;
  auto dry = RunCommand(kBin + "/exp_weight_map --results " + dir.path() +
                        " --dry-run --set dataset=mnist --set pair=lstm:lstm96");
  ASSERT_EQ(dry.exit_code, 0) << dry.out;
  EXPECT_NE(dry.out.find("mapping lstm → lstm"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("forget_gate.U"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("[64, 64]"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("[96, 96]"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("pad=zero"), std::string::npos) << dry.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "runs.db"));
  auto xc = RunCommand(kBin + "/exp_weight_map --results " + dir.path() + " --dry-run --set dataset=mnist");
  ASSERT_EQ(xc.exit_code, 0) << xc.out;
  EXPECT_NE(xc.out.find("mapping xlstm → cfc"), std::string::npos) << xc.out;
  EXPECT_NE(xc.out.find("slstm.forget_gate.U"), std::string::npos) << xc.out;
  auto bad = RunCommand(kBin + "/exp_weight_map --results " + dir.path() +
                        " --set dataset=mnist --set table=candidate.W=nosuch.W --set pair=lstm:cfc");
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_NE(bad.out.find("the target cfc has no parameter 'nosuch.W'"), std::string::npos) << bad.out;
  EXPECT_EQ(std::count(bad.out.begin(), bad.out.end(), '\n'), 1) << bad.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "runs.db"));
}

}  // namespace
}  // namespace tb
