#include "experiments/protocols/surgery.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/protocols/protocol.h"
#include "experiments/surgery/linear_algebra.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"

namespace tb {

void RequireEqualWidths(const std::string& what, const MethodCheck& c) {
  if (c.target_width != c.source_width) {
    throw BadInput(fmt::format("{}: target {} has {} penultimate features and source {} has {}; {}", what,
                               c.target.arch, c.target_width, c.source.arch, c.source_width,
                               "copying a head row needs equal widths (use a stitch or a cross-architecture method)"));
  }
}

void SurgeryScenario::Bind(Options& o) {
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
  o.Add("calibrate", &calibrate,
        "control: shift A's transfer-class bias by the largest amount (chosen on S_A validation data) that keeps "
        "preservation >= calibrate.threshold",
        {"none", "control"});
  o.Add("calibrate.threshold", &calibrate_threshold, "preservation to keep when calibrating");
  o.Add("calibrate.max_shift", &calibrate_max_shift, "largest bias shift calibration may choose");
  train.Bind(o, "train.");
}

std::string SurgeryScenario::ScenarioName() const {
  return fmt::format("A{}-B{}-T{}", fmt::join(classes_a, ""), fmt::join(classes_b, ""), fmt::join(transfer, ""));
}

namespace {

// A and B of one seed get different seeds, so they never share an initialisation.
uint64_t SeedA(int64_t seed) { return static_cast<uint64_t>(seed); }
uint64_t SeedB(int64_t seed) { return static_cast<uint64_t>(seed) + 1000; }

void Validate(const SurgeryScenario& c) {
  CheckClassList("classes_a", c.classes_a);
  CheckClassList("classes_b", c.classes_b);
  CheckClassList("transfer", c.transfer);
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
  CheckArchitecture("arch_a", c.arch_a, ArchKind::kImage);
  CheckArchitecture("arch_b", c.arch_b, ArchKind::kImage);
  if (c.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", c.train_per_class));
  CheckTrainOptions(c.train, "train.");
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

ZooRequest MakeZooRequest(const Dataset& ds, const SurgeryScenario& c, const std::string& arch,
                          const std::vector<int64_t>& classes, uint64_t seed, const ProtocolContext& ctx) {
  return ProtocolZooRequest(ds, ModelSpec{arch, c.activation, c.init, ds.num_classes}, classes, seed, -1, c.train,
                            c.train_per_class, ctx);
}

ScenarioData BuildScenario(const Dataset& ds, const SurgeryScenario& c, int64_t seed) {
  ScenarioData d;
  d.dataset = &ds;
  d.classes = ScenarioClasses{c.classes_a, c.classes_b, c.transfer};
  std::tie(d.a_train, d.a_val) = ZooTrainingData(ds, c.classes_a, c.train_per_class, c.train.val_fraction, SeedA(seed));
  std::tie(d.b_train, d.b_val) = ZooTrainingData(ds, c.classes_b, c.train_per_class, c.train.val_fraction, SeedB(seed));
  d.transfer_train = SelectClasses(d.b_train, c.transfer);
  std::vector<int64_t> all = c.classes_a;
  all.insert(all.end(), c.classes_b.begin(), c.classes_b.end());
  d.test = SelectClasses(ds.test, all);
  return d;
}

// calibrate=control: the largest shift of the transfer classes' biases (one shift for all of
// them) that keeps preservation on A's validation data at or above the threshold, as
// task-negation papers pick their coefficient under a control constraint. Applies to any
// method's A' (every model ends in a linear head).
void Calibrate(Classifier& original, Classifier& modified, const ScenarioData& data, const SurgeryScenario& c,
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

SurgeryMethod& AsSurgery(Method& method) {
  auto* m = dynamic_cast<SurgeryMethod*>(&method);
  if (!m) throw std::logic_error("surgery protocol given a method that is not a SurgeryMethod");
  return *m;
}

class SurgeryRun : public ProtocolRun {
 public:
  SurgeryRun() { config_.Bind(options_); }
  SurgeryRun(const SurgeryRun&) = delete;  // options_ points into config_
  SurgeryRun& operator=(const SurgeryRun&) = delete;
  Options& options() override { return options_; }

  bool SetShorthand(const std::string& key, const nlohmann::json& value, Options& all) override {
    if (key == "arch") {
      all.Set("arch_a", value);
      all.Set("arch_b", value);
      return true;
    }
    if (key == "pair") {
      // "source:target", e.g. "deep:wide" moves from a deep B into a wide A.
      const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      const auto colon = text.find(':');
      if (colon == std::string::npos) throw BadInput(fmt::format("pair={}: expected SOURCE:TARGET, e.g. deep:wide", text));
      all.Set("arch_b", text.substr(0, colon));
      all.Set("arch_a", text.substr(colon + 1));
      return true;
    }
    return false;
  }

  void CheckScenario() override {
    Validate(config_);
    // The scenario is a set of classes: written in any order, it is the same run (and hash).
    for (auto* classes : {&config_.classes_a, &config_.classes_b, &config_.transfer}) {
      std::sort(classes->begin(), classes->end());
    }
  }

  void CheckMethod(Method& method, const std::string& method_name) override {
    SurgeryMethod& m = AsSurgery(method);
    if (config_.transfer.size() > 1 && !m.SeveralTransferClasses()) {
      throw BadInput(fmt::format("transfer={}: {} moves one transfer class at a time (expected a single class; "
                                 "run one run per class)",
                                 fmt::join(config_.transfer, ","), method_name));
    }
    MethodCheck check;
    check.target = ModelSpec{config_.arch_a, config_.activation, config_.init};
    check.source = ModelSpec{config_.arch_b, config_.activation, config_.init};
    auto a = MakeModel(check.target);
    auto b = MakeModel(check.source);
    check.target_width = a->FeatureWidth();
    check.source_width = b->FeatureWidth();
    check.target_layers = a->HiddenLayerNames();
    check.source_layers = b->HiddenLayerNames();
    check.classes = ScenarioClasses{config_.classes_a, config_.classes_b, config_.transfer};
    m.Check(check);
  }

  nlohmann::json Identity() override {
    return {{"dataset_sha256", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).sha256}};
  }
  std::string ScenarioName() const override { return config_.ScenarioName(); }
  std::string Dataset() const override { return config_.dataset; }
  std::string Label() const override { return fmt::format("{} {}→{}", config_.dataset, config_.arch_b, config_.arch_a); }
  std::string Describe(const Method& method) const override {
    const auto* m = dynamic_cast<const SurgeryMethod*>(&method);
    return fmt::format("transfer classes: {}\n", m && m->SeveralTransferClasses()
                                                     ? "any number (each sample toward its own class)"
                                                     : "one per run");
  }

  MetricMap Execute(Method& method, ProtocolContext& ctx) override {
    SurgeryMethod& m = AsSurgery(method);
    const SurgeryScenario& c = config_;
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    const ::tb::Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
    ScenarioData data = BuildScenario(ds, c, ctx.seed);
    Zoo zoo(ctx.paths.zoo_dir(), ctx.store);
    ZooEntry a = zoo.Get(MakeZooRequest(ds, c, c.arch_a, c.classes_a, SeedA(ctx.seed), ctx), &ctx.log, "zoo/a/");
    ctx.log.Text(fmt::format("target A {} on {}: {} ({})", c.arch_a, fmt::join(c.classes_a, ","),
                             a.trained ? "trained" : "from the zoo", a.hash.substr(0, 12)));
    ZooEntry b = zoo.Get(MakeZooRequest(ds, c, c.arch_b, c.classes_b, SeedB(ctx.seed), ctx), &ctx.log, "zoo/b/");
    ctx.log.Text(fmt::format("source B {} on {}: {} ({})", c.arch_b, fmt::join(c.classes_b, ","),
                             b.trained ? "trained" : "from the zoo", b.hash.substr(0, 12)));
    ModelPtr source = SourceControl(b.model, ctx.source, SeedB(ctx.seed), ctx.device);
    ModelPtr target = CloneModel(a.model);
    const double source_transfer_acc = Accuracy(Predict(*source, data.test.images), data.test.labels, c.transfer);
    torch::manual_seed(static_cast<uint64_t>(ctx.seed));
    MethodContext mctx{data,    target, source, ctx.device, ctx.log, static_cast<uint64_t>(ctx.seed),
                       ctx.paths.results_dir + "/derived",
                       fmt::format("{} threads {} {}", ctx.device.str(), at::get_num_threads(), ctx.blas)};
    const double method_start = elapsed();
    MethodResult result = m.Run(mctx);
    const double method_seconds = elapsed() - method_start;
    if (c.calibrate == "control") Calibrate(*a.model, *result.model, data, c, result.diagnostics);

    const torch::Tensor before = Predict(*a.model, data.test.images);
    const torch::Tensor after = Predict(*result.model, data.test.images);
    MetricMap summary = TransferMetrics(before, after, data.test.labels, data.classes);
    for (const auto& [key, value] : result.diagnostics) {
      // Run-level diagnostics (calibration/...) keep their own prefix.
      summary[key.find('/') == std::string::npos ? ctx.method + "/" + key : key] = value;
    }
    summary["source_transfer_acc"] = source_transfer_acc;
    summary["time/method_seconds"] = method_seconds;
    summary["zoo/a_trained"] = a.trained ? 1 : 0;
    summary["zoo/b_trained"] = b.trained ? 1 : 0;
    return summary;
  }

 private:
  SurgeryScenario config_;
  Options options_;
};

}  // namespace

TB_REGISTER_PROTOCOL(surgery, SurgeryRun,
                     "edit a target A with a source B (both from the zoo) and evaluate A' once: transfer rate, "
                     "preservation, false transfer, joint accuracy");

}  // namespace tb
