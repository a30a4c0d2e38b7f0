#include "experiments/cli/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/cli/console.h"
#include "experiments/cli/environment.h"
#include "experiments/surgery/linear_algebra.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"
#include "store/logger.h"
#include "store/wandb.h"

namespace tb {
namespace {

// A and B of one seed get different seeds, so they never share an initialisation.
uint64_t SeedA(int64_t seed) { return static_cast<uint64_t>(seed); }
uint64_t SeedB(int64_t seed) { return static_cast<uint64_t>(seed) + 1000; }

void CheckClasses(const std::string& name, const std::vector<int64_t>& classes) {
  if (classes.empty()) throw BadInput(fmt::format("{}: expected at least one class", name));
  std::set<int64_t> seen;
  for (int64_t c : classes) {
    if (c < 0 || c > 9) throw BadInput(fmt::format("{}={}: class {} out of range 0..9", name, fmt::join(classes, ","), c));
    if (!seen.insert(c).second) throw BadInput(fmt::format("{}={}: class {} listed twice", name, fmt::join(classes, ","), c));
  }
}

void Validate(const RunConfig& c) {
  CheckClasses("classes_a", c.classes_a);
  CheckClasses("classes_b", c.classes_b);
  CheckClasses("transfer", c.transfer);
  for (int64_t t : c.transfer) {
    if (std::find(c.classes_b.begin(), c.classes_b.end(), t) == c.classes_b.end()) {
      throw BadInput(fmt::format("transfer={}: class {} is not in classes_b ({})", fmt::join(c.transfer, ","), t,
                                 fmt::join(c.classes_b, ",")));
    }
    if (std::find(c.classes_a.begin(), c.classes_a.end(), t) != c.classes_a.end()) {
      throw BadInput(fmt::format("transfer={}: class {} is already in classes_a ({})", fmt::join(c.transfer, ","), t,
                                 fmt::join(c.classes_a, ",")));
    }
  }
  const auto archs = ModelNames();
  for (const auto& [key, arch] : {std::pair{"arch_a", c.arch_a}, std::pair{"arch_b", c.arch_b}}) {
    if (std::find(archs.begin(), archs.end(), arch) == archs.end()) {
      throw BadInput(fmt::format("{}={}: unknown architecture (expected one of {})", key, arch, fmt::join(archs, ", ")));
    }
  }
  if (c.threads < 0) throw BadInput(fmt::format("threads={}: expected 0 (all cores) or a positive count", c.threads));
  if (c.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", c.train_per_class));
  if (c.train.epochs < 0) throw BadInput(fmt::format("train.epochs={}: expected >= 0", c.train.epochs));
  if (!(c.train.lr > 0)) throw BadInput(fmt::format("train.lr={}: expected > 0", c.train.lr));
  if (c.train.batch_size < 1) throw BadInput(fmt::format("train.batch_size={}: expected >= 1", c.train.batch_size));
  if (!(c.train.val_fraction >= 0 && c.train.val_fraction < 1)) {
    throw BadInput(fmt::format("train.val_fraction={}: expected a value in [0, 1)", c.train.val_fraction));
  }
  if (!(c.calibrate_threshold >= 0 && c.calibrate_threshold <= 1)) {
    throw BadInput(fmt::format("calibrate.threshold={}: expected a share of preservation in [0, 1]", c.calibrate_threshold));
  }
  if (!(c.calibrate_max_shift >= 0)) {
    throw BadInput(fmt::format("calibrate.max_shift={}: expected >= 0", c.calibrate_max_shift));
  }
  if (c.calibrate == "control" && c.train.val_fraction == 0) {
    throw BadInput("calibrate=control with train.val_fraction=0: calibration chooses its shift on A's validation data "
                   "(expected train.val_fraction > 0)");
  }
}

// The scenario is a set of classes: written in any order, it is the same run (and the same hash).
void Canonicalise(RunConfig& c) {
  for (auto* classes : {&c.classes_a, &c.classes_b, &c.transfer}) std::sort(classes->begin(), classes->end());
}

ZooRequest MakeZooRequest(const Dataset& ds, const RunConfig& c, const std::string& arch,
                          const std::vector<int64_t>& classes, uint64_t seed, torch::Device device) {
  ZooRequest r;
  r.dataset = &ds;
  r.model = ModelSpec{arch, c.activation, c.init, ds.num_classes};
  r.classes = classes;
  r.seed = seed;
  r.train = c.train;
  r.train_per_class = c.train_per_class;
  r.device = device;
  r.threads = at::get_num_threads();
  r.blas = BlasIdentity();
  return r;
}

ScenarioData BuildScenario(const Dataset& ds, const RunConfig& c) {
  ScenarioData d;
  d.dataset = &ds;
  d.classes = ScenarioClasses{c.classes_a, c.classes_b, c.transfer};
  std::tie(d.a_train, d.a_val) = ZooTrainingData(ds, c.classes_a, c.train_per_class, c.train.val_fraction, SeedA(c.seed));
  std::tie(d.b_train, d.b_val) = ZooTrainingData(ds, c.classes_b, c.train_per_class, c.train.val_fraction, SeedB(c.seed));
  d.transfer_train = SelectClasses(d.b_train, c.transfer);
  std::vector<int64_t> all = c.classes_a;
  all.insert(all.end(), c.classes_b.begin(), c.classes_b.end());
  d.test = SelectClasses(ds.test, all);
  return d;
}

// The source control (DESIGN.md, "Control"): B's knowledge destroyed, its statistics kept.
ModelPtr ApplyControl(const ModelPtr& source, const std::string& control, int64_t seed, torch::Device device) {
  if (control == "trained") return CloneModel(source);  // a method may not change the zoo's B
  if (control == "random") {
    torch::manual_seed(SeedB(seed) + 7777);
    ModelPtr fresh = MakeModel(source->spec());
    fresh->to(device);
    fresh->eval();
    return fresh;
  }
  // shuffled: every parameter tensor's entries permuted; same values, no structure.
  ModelPtr shuffled = CloneModel(source);
  torch::NoGradGuard no_grad;
  uint64_t i = 0;
  for (auto& p : shuffled->parameters()) {
    auto perm = torch::tensor(PortablePermutation(p.numel(), SeedB(seed) * 7919ULL + i++), torch::kInt64).to(device);
    p.copy_(p.reshape({-1}).index_select(0, perm).reshape(p.sizes()));
  }
  shuffled->eval();
  return shuffled;
}

// calibrate=control: the largest shift of the transfer classes' biases (one shift for all of
// them) that keeps preservation on A's validation data at or above the threshold, as task-negation papers pick their coefficient
// under a control constraint. Applies to any method's A' (every model ends in a linear head).
void Calibrate(Classifier& original, Classifier& modified, const ScenarioData& data, const RunConfig& c,
               MetricMap& diagnostics) {
  const Split& val = data.a_val;
  if (val.size() == 0) throw BadInput("calibrate=control needs validation data (train.val_fraction > 0)");
  const int64_t reference = Predict(original, val.images).eq(val.labels).sum().item<int64_t>();
  const double shift = CalibrationShift(Logits(modified, val.images), val.labels, c.transfer, reference,
                                        c.calibrate_threshold, c.calibrate_max_shift);
  torch::NoGradGuard no_grad;
  for (int64_t t : c.transfer) modified.head->bias[t].add_(shift);
  const int64_t kept = Predict(modified, val.images).eq(val.labels).sum().item<int64_t>();
  diagnostics["calibration/shift"] = shift;
  diagnostics["calibration/val_preservation"] =
      reference > 0 ? static_cast<double>(kept) / static_cast<double>(reference) : std::nan("");
}

Options BindAll(RunConfig& config, Method& method) {
  Options all;
  config.Bind(all);
  all.Merge(method.options());
  return all;
}

}  // namespace

void RunConfig::Bind(Options& o) {
  o.Add("dataset", &dataset, "dataset name", DatasetNames());
  o.Add("data.dir", &data_dir, "directory of IDX files (overrides the dataset's default location)");
  o.Add("data.train_per_class", &train_per_class, "use at most this many training images per class (0: all)");
  o.Add("classes_a", &classes_a, "S_A: classes the target A is trained on");
  o.Add("classes_b", &classes_b, "S_B: classes the source B is trained on");
  o.Add("transfer", &transfer, "T: classes to move from B into A (in S_B, not in S_A)");
  o.Add("arch_a", &arch_a, "target architecture (arch=X sets both)");
  o.Add("arch_b", &arch_b, "source architecture");
  o.Add("activation", &activation, "hidden activation of A and B", ActivationNames());
  o.Add("init", &init, "weight initialisation of A and B", InitNames());
  o.Add("seed", &seed, "run seed (A is trained with seed, B with seed + 1000)");
  o.Add("source", &source, "source control: trained, or its knowledge destroyed", {"trained", "random", "shuffled"});
  o.Add("calibrate", &calibrate,
        "control: shift A's transfer-class bias by the largest amount (chosen on S_A validation data) that keeps "
        "preservation >= calibrate.threshold",
        {"none", "control"});
  o.Add("calibrate.threshold", &calibrate_threshold, "preservation to keep when calibrating");
  o.Add("calibrate.max_shift", &calibrate_max_shift, "largest bias shift calibration may choose");
  train.Bind(o, "train.");
  o.Add("threads", &threads, "intra-op threads (0: all cores)");
  o.Add("device", &device, "compute device", {"auto", "cpu", "cuda"});
}

std::string RunConfig::ScenarioName() const {
  return fmt::format("A{}-B{}-T{}", fmt::join(classes_a, ""), fmt::join(classes_b, ""), fmt::join(transfer, ""));
}

PreparedRun PrepareRun(const RunRequest& request) {
  PreparedRun p;
  p.request = request;
  if (!request.suite.empty()) CheckSuiteName(request.suite);
  p.method = Methods().Find(request.method).make();
  Options all = BindAll(p.config, *p.method);
  for (const auto& [key, value] : request.settings) {
    if (key.rfind("wandb.", 0) == 0) {
      p.wandb[key] = value.is_string() ? value.get<std::string>() : value.dump();
    } else if (key == "arch") {
      all.Set("arch_a", value);
      all.Set("arch_b", value);
    } else if (key == "pair") {
      // "source:target", e.g. "deep:wide" moves from a deep B into a wide A.
      const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      const auto colon = text.find(':');
      if (colon == std::string::npos) throw BadInput(fmt::format("pair={}: expected SOURCE:TARGET, e.g. deep:wide", text));
      all.Set("arch_b", text.substr(0, colon));
      all.Set("arch_a", text.substr(colon + 1));
    } else {
      all.Set(key, value);
    }
  }
  Validate(p.config);
  Canonicalise(p.config);
  if (p.config.transfer.size() > 1 && !p.method->SeveralTransferClasses()) {
    throw BadInput(fmt::format("transfer={}: {} moves one transfer class at a time (expected a single class; "
                               "run one run per class)",
                               fmt::join(p.config.transfer, ","), request.method));
  }
  WandbSettings::Resolve(p.wandb);  // a bad wandb.* value or WANDB_MODE is bad input too
  {
    MethodCheck check;
    check.target = ModelSpec{p.config.arch_a, p.config.activation, p.config.init};
    check.source = ModelSpec{p.config.arch_b, p.config.activation, p.config.init};
    auto a = MakeModel(check.target);
    auto b = MakeModel(check.source);
    check.target_width = a->FeatureWidth();
    check.source_width = b->FeatureWidth();
    check.target_layers = a->HiddenLayerNames();
    check.source_layers = b->HiddenLayerNames();
    check.classes = ScenarioClasses{p.config.classes_a, p.config.classes_b, p.config.transfer};
    p.method->Check(check);
  }
  const torch::Device device = ResolveDevice(p.config.device);
  const Dataset& ds = LoadDataset(DataSpec{p.config.dataset, p.config.data_dir});
  p.config_json = all.ToJson();
  p.config_json["threads"] =
      p.config.threads > 0 ? p.config.threads : static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  p.config_json["device"] = device.str();
  p.config_json["method"] = request.method;
  p.config_json["dataset_sha256"] = ds.sha256;
  p.config_json["runner_version"] = kRunnerVersion;
  p.config_hash = JsonHash(p.config_json);
  const auto& c = p.config;
  p.label = fmt::format("{} {} {}→{} seed {} source {}", request.method, c.dataset, c.arch_b, c.arch_a, c.seed, c.source);
  return p;
}

DeclaredOptions DeclaredDefaults() {
  DeclaredOptions d;
  RunConfig config;
  Options run_options;
  config.Bind(run_options);
  d.run = run_options.ToJson();
  for (const auto& name : Methods().Names()) d.method[name] = Methods().Find(name).make()->options().ToJson();
  return d;
}

std::string RunHelp(const std::string& method) {
  const MethodInfo& info = Methods().Find(method);
  auto m = info.make();
  RunConfig config;
  Options run_options;
  config.Bind(run_options);
  return fmt::format("{} — {}\nreference: {}\ntransfer classes: {}\n\nmethod options:\n{}\nrun options:\n{}", info.name,
                     info.display_name, info.reference,
                     m->SeveralTransferClasses() ? "any number (each sample toward its own class)" : "one per run",
                     m->options().Help(), run_options.Help());
}

RunOutcome ExecuteRun(PreparedRun& run, const ResultPaths& paths, const ExecuteOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  RunOutcome out;
  std::error_code ec;
  std::filesystem::create_directories(paths.results_dir, ec);
  if (ec) throw BadInput(fmt::format("--results {}: cannot create the directory ({})", paths.results_dir, ec.message()));
  RunStore store(paths.store_path());
  if (options.skip_finished) {
    if (auto id = store.FinishedRunWithHash(run.config_hash)) {
      // Finished by another process since the suite started: it is this suite's too.
      if (!run.request.suite.empty()) store.TagSuiteMembers({*id}, run.request.suite);
      out.run_id = *id;
      out.status = RunStatus::kFinished;
      out.exit_code = 0;
      out.skipped = true;
      out.summary = store.Summary(*id);
      return out;
    }
  }
  const RunConfig& c = run.config;
  ConfigureTorch(c.threads);
  WarnIfReferenceBlas();
  CheckBlasOnce();  // a BLAS that multiplies wrongly must not measure anything
  const torch::Device device = ResolveDevice(c.device);

  NewRun record;
  record.suite = run.request.suite;
  record.method = run.request.method;
  record.scenario = c.ScenarioName();
  record.dataset = c.dataset;
  record.seed = c.seed;
  record.config = run.config_json;
  record.config_hash = run.config_hash;
  record.environment = CaptureEnvironment(device);
  const GitState git = SourceGitState();
  record.git_commit = git.commit;
  record.git_dirty = git.dirty;
  record.tags = run.request.tags;
  out.run_id = store.CreateRun(record);

  FanOutLogger log;
  log.Add(std::make_unique<SqliteLogger>(paths.store_path(), out.run_id));
  log.Add(std::make_unique<ConsoleLogger>(options.verbose));
  // The W&B mirror reads what the SQLite logger committed, so it comes after it.
  if (WandbSettings wandb = WandbSettings::Resolve(run.wandb); wandb.Online()) {
    log.Add(std::make_unique<WandbLogger>(paths.store_path(), out.run_id, wandb));
  }
  try {
    const Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
    ScenarioData data = BuildScenario(ds, c);
    Zoo zoo(paths.zoo_dir(), store);
    ZooEntry a = zoo.Get(MakeZooRequest(ds, c, c.arch_a, c.classes_a, SeedA(c.seed), device), &log, "zoo/a/");
    log.Text(fmt::format("target A {} on {}: {} ({})", c.arch_a, fmt::join(c.classes_a, ","),
                         a.trained ? "trained" : "from the zoo", a.hash.substr(0, 12)));
    ZooEntry b = zoo.Get(MakeZooRequest(ds, c, c.arch_b, c.classes_b, SeedB(c.seed), device), &log, "zoo/b/");
    log.Text(fmt::format("source B {} on {}: {} ({})", c.arch_b, fmt::join(c.classes_b, ","),
                         b.trained ? "trained" : "from the zoo", b.hash.substr(0, 12)));
    ModelPtr source = ApplyControl(b.model, c.source, c.seed, device);
    ModelPtr target = CloneModel(a.model);
    const double source_transfer_acc = Accuracy(Predict(*source, data.test.images), data.test.labels, c.transfer);
    torch::manual_seed(static_cast<uint64_t>(c.seed));
    MethodContext ctx{data, target, source, device, log, static_cast<uint64_t>(c.seed)};
    const double method_start = elapsed();
    MethodResult result = run.method->Run(ctx);
    const double method_seconds = elapsed() - method_start;
    if (c.calibrate == "control") Calibrate(*a.model, *result.model, data, c, result.diagnostics);

    const torch::Tensor before = Predict(*a.model, data.test.images);
    const torch::Tensor after = Predict(*result.model, data.test.images);
    MetricMap summary = TransferMetrics(before, after, data.test.labels, data.classes);
    for (const auto& [key, value] : result.diagnostics) {
      // Run-level diagnostics (calibration/...) keep their own prefix.
      summary[key.find('/') == std::string::npos ? run.request.method + "/" + key : key] = value;
    }
    summary["source_transfer_acc"] = source_transfer_acc;
    summary["time/method_seconds"] = method_seconds;
    summary["time/total_seconds"] = elapsed();
    summary["zoo/a_trained"] = a.trained ? 1 : 0;
    summary["zoo/b_trained"] = b.trained ? 1 : 0;
    log.Summary(summary);
    log.RunEnded(RunStatus::kFinished, 0, "");
    out.status = RunStatus::kFinished;
    out.exit_code = 0;
    out.summary = summary;
  } catch (const BadInput& e) {
    out.error = e.what();
    out.exit_code = 2;
    log.RunEnded(RunStatus::kFailed, 2, out.error);
  } catch (const c10::Error& e) {
    out.error = e.what_without_backtrace();
    log.RunEnded(RunStatus::kFailed, 1, out.error);
  } catch (const std::exception& e) {
    out.error = e.what();
    log.RunEnded(RunStatus::kFailed, 1, out.error);
  }
  out.seconds = elapsed();
  return out;
}

}  // namespace tb
