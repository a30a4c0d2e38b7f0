#include "experiments/protocols/bootstrap.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include "experiments/models/sequence.h"
#include "experiments/protocols/merge.h"
#include "experiments/protocols/protocol.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {

torch::Tensor BootstrapMethod::Loss(BootstrapContext&, const torch::Tensor& logits, const torch::Tensor&,
                                    const torch::Tensor& labels) {
  return torch::nn::functional::cross_entropy(logits, labels);
}

void MappingChoice::Bind(Options& o) {
  o.Add("table", &table, "the mapping: empty for the pair's declared table, else source_param=target_param,...");
  o.Add("pad", &pad, "what fills the target beyond the copied block: zero (the document's) or random (its own init)",
        {"zero", "random"});
}

MappingTable MappingChoice::Resolve(Classifier& source, Classifier& target) const {
  MappingTable t = table.empty() ? BuiltinMapping(FamilyOf(source, "arch_b"), FamilyOf(target, "arch_a"))
                                 : ParseMapping("table", table);
  CheckMapping(t, source, target, "table");
  Pad();
  return t;
}

int64_t StepsToTarget(const LearningCurve& curve, double threshold) {
  for (size_t i = 0; i < curve.steps.size(); ++i) {
    if (curve.acc[i] >= threshold) return curve.steps[i];
  }
  return -1;
}

double AreaUnderCurve(const LearningCurve& curve) {
  if (curve.acc.empty()) return std::nan("");
  if (curve.steps.size() == 1 || curve.steps.back() == 0) return curve.acc.front();
  double area = 0;
  for (size_t i = 1; i < curve.steps.size(); ++i) {
    area += 0.5 * (curve.acc[i] + curve.acc[i - 1]) * static_cast<double>(curve.steps[i] - curve.steps[i - 1]);
  }
  return area / static_cast<double>(curve.steps.back());
}

double DeadCapacity(const std::vector<torch::Tensor>& before, const std::vector<torch::Tensor>& after) {
  if (before.size() != after.size()) throw std::logic_error("DeadCapacity: parameter lists differ in length");
  int64_t same = 0, total = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    same += before[i].eq(after[i].detach().to(before[i].device())).sum().item<int64_t>();
    total += before[i].numel();
  }
  return total == 0 ? 0.0 : static_cast<double>(same) / static_cast<double>(total);
}

namespace {

// Bump when the training loop below changes the curves it produces: part of the reference
// curve's cache key (with kSequenceModelVersion, for the models' own code).
constexpr int kCurveVersion = 1;

struct BootstrapScenario {
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  int64_t train_per_class = 500;
  int64_t test_per_class = 100;
  std::vector<int64_t> classes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::string arch_a = "cfc";   // the target
  std::string arch_b = "xlstm";  // the source
  TrainOptions source_train;
  int64_t steps = 300;
  int64_t eval_every = 25;
  double lr = 1e-3;
  int64_t batch_size = 64;
  double target_fraction = 0.9;

  BootstrapScenario() { source_train.epochs = 5; }

  void Bind(Options& o) {
    o.Add("dataset", &dataset, "dataset name (each image read as 28 steps of 28 features)", DatasetNames());
    o.Add("data.dir", &data_dir, "directory of IDX files (overrides the dataset's default location)");
    o.Add("data.train_per_class", &train_per_class, "training images per class (0: all)");
    o.Add("eval.test_per_class", &test_per_class, "test images per class the learning curve is evaluated on (0: all)");
    o.Add("classes", &classes, "the task: its classes");
    o.Add("arch_a", &arch_a, "the target architecture (e.g. cfc, lstm96)");
    o.Add("arch_b", &arch_b, "the source architecture, trained in the zoo on the task");
    source_train.Bind(o, "source.train.");
    o.Add("train.steps", &steps, "the target's step budget (Adam steps after the method's initialisation)");
    o.Add("train.eval_every", &eval_every, "evaluate the target every this many steps (and at step 0 and the last)");
    o.Add("train.lr", &lr, "the target's Adam learning rate");
    o.Add("train.batch_size", &batch_size, "the target's batch size");
    o.Add("target_fraction", &target_fraction, "steps_to_target: steps to this fraction of the source's accuracy");
  }
};

BootstrapMethod& AsBootstrap(Method& method) {
  auto* m = dynamic_cast<BootstrapMethod*>(&method);
  if (!m) throw std::logic_error("bootstrap protocol given a method that is not a BootstrapMethod");
  return *m;
}

struct CurveSettings {
  int64_t steps, eval_every, batch_size;
  double lr;
};

// Trains `model` for the budget with `loss`, evaluating at step 0, every eval_every steps and
// at the last; batches from a portable permutation per pass over `fit` (seeded as the trainer's).
LearningCurve TrainCurve(Classifier& model, const Split& fit, const BootstrapData& data, const CurveSettings& s,
                         uint64_t seed, const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&,
                                                                          const torch::Tensor&)>& loss_fn,
                         RunLogger* log, const std::string& key) {
  const auto device = model.parameters().front().device();
  const auto images = fit.images.to(device), labels = fit.labels.to(device);
  std::vector<torch::Tensor> before;
  for (const auto& p : model.parameters()) before.push_back(p.detach().clone());
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(s.lr));
  LearningCurve curve;
  auto evaluate = [&](int64_t step) {
    const double acc = ClassAccuracy(Logits(model, data.test.images, kMergeEvalBatch), data.test.labels, data.classes);
    curve.steps.push_back(step);
    curve.acc.push_back(acc);
    if (log) log->Scalar(key, acc, step);
  };
  evaluate(0);
  const int64_t n = fit.size();
  if (n == 0) throw BadInput("the training set is empty (check the classes and data.train_per_class)");
  // Whole batches only (every step sees as many images), but never more than the set holds.
  const int64_t batch = std::min(s.batch_size, n);
  int64_t step = 0, epoch = 0;
  while (step < s.steps) {
    const auto order = PortablePermutation(n, seed * 1000003ULL + static_cast<uint64_t>(epoch++));
    const auto perm = torch::tensor(order, torch::kInt64).to(device);
    for (int64_t i = 0; i + batch <= n && step < s.steps; i += batch) {
      model.train();
      const auto idx = perm.slice(0, i, i + batch);
      const auto x = images.index_select(0, idx), y = labels.index_select(0, idx);
      optimizer.zero_grad();
      auto loss = loss_fn(model.forward(x), x, y);
      loss.backward();
      optimizer.step();
      ++step;
      if (step % s.eval_every == 0 || step == s.steps) evaluate(step);
    }
  }
  model.eval();
  curve.dead_capacity = DeadCapacity(before, model.parameters());
  return curve;
}

nlohmann::json CurveJson(const LearningCurve& c) {
  return {{"steps", c.steps}, {"acc", c.acc}, {"dead_capacity", c.dead_capacity}};
}
LearningCurve CurveFromJson(const nlohmann::json& j) {
  LearningCurve c;
  c.steps = j.at("steps").get<std::vector<int64_t>>();
  c.acc = j.at("acc").get<std::vector<double>>();
  c.dead_capacity = j.at("dead_capacity").get<double>();
  return c;
}

struct Bootstrapped {
  ModelPtr target;
  LearningCurve curve, reference;
  MetricMap diagnostics;
  double source_acc = 0, init_seconds = 0, seconds = 0;
};

class BootstrapRun : public ProtocolRun {
 public:
  BootstrapRun() { config_.Bind(options_); }
  BootstrapRun(const BootstrapRun&) = delete;
  BootstrapRun& operator=(const BootstrapRun&) = delete;
  Options& options() override { return options_; }
  bool SetShorthand(const std::string& key, const nlohmann::json& value, Options& all) override {
    if (key != "pair") return false;
    // "source:target", e.g. "xlstm:cfc" starts a cfc from a trained xlstm.
    const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    const auto colon = text.find(':');
    if (colon == std::string::npos) throw BadInput(fmt::format("pair={}: expected SOURCE:TARGET, e.g. xlstm:cfc", text));
    all.Set("arch_b", text.substr(0, colon));
    all.Set("arch_a", text.substr(colon + 1));
    return true;
  }

  void CheckScenario() override {
    const BootstrapScenario& c = config_;
    CheckClassList("classes", c.classes);
    if (c.classes.size() < 2) throw BadInput(fmt::format("classes={}: expected at least two classes", fmt::join(c.classes, ",")));
    std::sort(config_.classes.begin(), config_.classes.end());
    for (const auto& [key, arch] : {std::pair<const char*, std::string>{"arch_a", c.arch_a}, {"arch_b", c.arch_b}}) {
      CheckArchitecture(key, arch);
      if (!IsSequenceArch(arch)) {
        throw BadInput(fmt::format("{}={}: not a sequence model (expected one of {}, optionally with a width)", key, arch,
                                   fmt::join(SequenceFamilies(), ", ")));
      }
    }
    if (c.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", c.train_per_class));
    if (c.test_per_class < 0) throw BadInput(fmt::format("eval.test_per_class={}: expected >= 0", c.test_per_class));
    CheckTrainOptions(c.source_train, "source.train.");
    if (c.steps < 1) throw BadInput(fmt::format("train.steps={}: expected at least 1", c.steps));
    if (c.eval_every < 1) throw BadInput(fmt::format("train.eval_every={}: expected at least 1", c.eval_every));
    if (!(c.lr > 0)) throw BadInput(fmt::format("train.lr={}: expected > 0", c.lr));
    if (c.batch_size < 1) throw BadInput(fmt::format("train.batch_size={}: expected at least 1", c.batch_size));
    if (!(c.target_fraction > 0 && c.target_fraction <= 1)) {
      throw BadInput(fmt::format("target_fraction={}: expected in (0, 1]", c.target_fraction));
    }
  }
  void CheckMethod(Method& method, const std::string& method_name) override {
    auto [source, target] = FreshPair();
    AsBootstrap(method).CheckPair(*source, *target);
  }
  std::string DryRun(Method& method) override {
    auto [source, target] = FreshPair();
    return fmt::format("source {} ({} parameters) → target {} ({} parameters)\n{}", config_.arch_b,
                       CountParameters(*source), config_.arch_a, CountParameters(*target),
                       AsBootstrap(method).DryRun(*source, *target));
  }
  nlohmann::json Identity() override {
    return {{"dataset_sha256", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).sha256}};
  }
  std::string ScenarioName() const override {
    std::string classes;
    for (int64_t c : config_.classes) classes += std::to_string(c);
    return fmt::format("{}-{}-C{}", config_.arch_b, config_.arch_a, classes);
  }
  std::string Dataset() const override { return config_.dataset; }
  std::string Label() const override { return fmt::format("{} {}→{}", config_.dataset, config_.arch_b, config_.arch_a); }

  // One bootstrap: the source from the zoo (and its control), the method's initialisation of
  // the target and its training for the budget; with `reference`, the cached random-init curve
  // too. `need_model` false lets the reference row reuse the reference curve (the same
  // initialisation, loss and batches) instead of training it twice; its target is then untrained.
  Bootstrapped Core(BootstrapMethod& m, ProtocolContext& ctx, const std::string& control, bool with_reference,
                    bool need_model) {
    const BootstrapScenario& c = config_;
    const ::tb::Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
    const auto seed = static_cast<uint64_t>(ctx.seed);
    BootstrapData data;
    data.dataset = &ds;
    data.classes = c.classes;
    std::tie(data.fit, data.val) = ZooTrainingData(ds, c.classes, c.train_per_class, c.source_train.val_fraction, seed);
    data.test = LimitPerClass(SelectClasses(ds.test, c.classes), c.test_per_class);

    // The source, from the zoo, and its accuracy: the target's goal.
    Zoo zoo(ctx.paths.zoo_dir(), ctx.store);
    ZooEntry source = zoo.Get(ProtocolZooRequest(ds, ModelSpec{c.arch_b, "relu", "default", ds.num_classes}, c.classes,
                                                 seed, -1, c.source_train, c.train_per_class, ctx),
                              &ctx.log, "zoo/source/");
    ctx.log.Text(fmt::format("source {} on {}: {} ({})", c.arch_b, fmt::join(c.classes, ","),
                             source.trained ? "trained" : "from the zoo", source.hash.substr(0, 12)));
    Bootstrapped out;
    out.source_acc =
        ClassAccuracy(Logits(*source.model, data.test.images, kMergeEvalBatch), data.test.labels, c.classes);
    const CurveSettings settings{c.steps, c.eval_every, c.batch_size, c.lr};
    const ModelSpec target_spec{c.arch_a, "relu", "default", ds.num_classes};
    auto fresh_target = [&] {
      torch::manual_seed(seed * 7919ULL + 4242);
      ModelPtr t = MakeModel(target_spec);
      t->to(ctx.device);
      return t;
    };
    auto cross_entropy = [](const torch::Tensor& logits, const torch::Tensor&, const torch::Tensor& labels) {
      return torch::nn::functional::cross_entropy(logits, labels);
    };

    // The random-init reference: the target from its own initialisation, same budget and
    // batches; trained once per (data, target, seed, budget) and cached.
    if (with_reference) {
      out.reference = ReferenceCurve(ctx, ds, data, target_spec, settings, seed, [&] {
        ModelPtr t = fresh_target();
        return TrainCurve(*t, data.fit, data, settings, seed, cross_entropy, &ctx.log, "curve/random_init_acc");
      });
    }

    const auto t0 = std::chrono::steady_clock::now();
    BootstrapContext bc{data, SourceControl(source.model, control, seed, ctx.device), fresh_target(), ctx.device,
                        ctx.log, seed};
    torch::manual_seed(seed + 99);
    out.diagnostics = m.Initialise(bc);
    bc.target->to(ctx.device);
    out.init_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (m.IsReference() && with_reference && !need_model) {
      out.curve = out.reference;
      for (size_t i = 0; i < out.curve.steps.size(); ++i) ctx.log.Scalar("curve/acc", out.curve.acc[i], out.curve.steps[i]);
    } else {
      out.curve = TrainCurve(*bc.target, data.fit, data, settings, seed,
                             [&](const torch::Tensor& logits, const torch::Tensor& x, const torch::Tensor& y) {
                               return m.Loss(bc, logits, x, y);
                             },
                             &ctx.log, "curve/acc");
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.target = bc.target;
    return out;
  }

  MetricMap Execute(Method& method, ProtocolContext& ctx) override {
    BootstrapMethod& m = AsBootstrap(method);
    if (ctx.source != "trained" && !m.UsesSource()) {
      throw BadInput(fmt::format("source={}: {} does not use the source the control replaces (expected source=trained)",
                                 ctx.source, ctx.method));
    }
    const BootstrapScenario& c = config_;
    const Bootstrapped b = Core(m, ctx, ctx.source, /*with_reference=*/true, /*need_model=*/false);
    const double source_acc = b.source_acc, threshold = c.target_fraction * b.source_acc;
    const LearningCurve& curve = b.curve;
    const LearningCurve& reference = b.reference;
    const double seconds = b.seconds, init_seconds = b.init_seconds;
    const MetricMap& diagnostics = b.diagnostics;

    MetricMap summary;
    summary["source_acc"] = source_acc;
    summary["threshold"] = threshold;
    summary["target_params"] = static_cast<double>(CountParameters(*b.target));
    auto describe = [&](const std::string& prefix, const LearningCurve& lc) {
      summary[prefix + "step0"] = lc.acc.front();
      summary[prefix + "final"] = lc.acc.back();
      summary[prefix + "aulc"] = AreaUnderCurve(lc);
      summary[prefix + "dead_capacity"] = lc.dead_capacity;
      const int64_t st = StepsToTarget(lc, threshold);
      summary[prefix + "target_reached"] = st >= 0 ? 1.0 : 0.0;
      summary[prefix + "steps_to_target"] = st >= 0 ? static_cast<double>(st) : std::nan("");
      return st;
    };
    const int64_t method_steps = describe("", curve);
    const int64_t reference_steps = describe("random_init/", reference);
    // Speed-up: the reference's steps over the method's, paired by seed. Where the method is
    // there at step 0 its steps are counted as one evaluation interval, and where the reference
    // never gets there as the whole budget: both make the ratio a lower bound (speedup_bound 1).
    if (method_steps >= 0) {
      const bool bound = method_steps == 0 || reference_steps < 0;
      const double num = reference_steps >= 0 ? static_cast<double>(reference_steps) : static_cast<double>(c.steps);
      const double den = method_steps == 0 ? static_cast<double>(c.eval_every) : static_cast<double>(method_steps);
      // Where the reference is there at step 0 no method is faster: 1 for one there too, else 0.
      summary["speedup"] = reference_steps == 0 ? (method_steps == 0 ? 1.0 : 0.0) : num / den;
      summary["speedup_bound"] = bound && reference_steps != 0 ? 1.0 : 0.0;
    }
    summary["aulc_gain"] = summary["aulc"] - summary["random_init/aulc"];
    summary["time/method_seconds"] = seconds;
    summary["time/init_seconds"] = init_seconds;
    for (const auto& [k, v] : diagnostics) summary[ctx.method + "/" + k] = v;
    return summary;
  }

 private:
  std::pair<ModelPtr, ModelPtr> FreshPair() const {
    // Made for checks only: torch's generator is left as it was.
    torch::manual_seed(0);
    ModelPtr source = MakeModel(ModelSpec{config_.arch_b});
    ModelPtr target = MakeModel(ModelSpec{config_.arch_a});
    return {source, target};
  }

  LearningCurve ReferenceCurve(ProtocolContext& ctx, const ::tb::Dataset& ds, const BootstrapData& data,
                               const ModelSpec& target, const CurveSettings& s, uint64_t seed,
                               const std::function<LearningCurve()>& train) {
    const BootstrapScenario& c = config_;
    const nlohmann::json key = {{"kind", "bootstrap random-init curve"}, {"version", kCurveVersion},
                                {"trainer", kTrainerVersion},             {"dataset_sha256", ds.sha256},
                                {"arch", target.arch},                    {"num_classes", target.num_classes},
                                {"classes", c.classes},                   {"train_per_class", c.train_per_class},
                                {"val_fraction", c.source_train.val_fraction}, {"test_per_class", c.test_per_class},
                                {"steps", s.steps},                       {"eval_every", s.eval_every},
                                {"lr", s.lr},                             {"batch_size", s.batch_size},
                                {"seed", seed},                           {"threads", at::get_num_threads()},
                                {"sequence_models", kSequenceModelVersion},
                                {"blas", ctx.blas},                       {"device", ctx.device.str()}};
    const std::string dir = ctx.paths.zoo_dir() + "/curves";
    const std::string path = dir + "/" + JsonHash(key) + ".json";
    if (std::ifstream in(path); in) {
      try {
        const auto j = nlohmann::json::parse(in);
        if (j.at("key") == key) {
          LearningCurve lc = CurveFromJson(j.at("curve"));
          for (size_t i = 0; i < lc.steps.size(); ++i) ctx.log.Scalar("curve/random_init_acc", lc.acc[i], lc.steps[i]);
          ctx.log.Text("random-init reference curve from the cache (" + path + ")");
          return lc;
        }
      } catch (const std::exception&) {
        // A damaged cache file is trained again and replaced.
      }
    }
    LearningCurve lc = train();
    std::filesystem::create_directories(dir);
    const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
    {
      std::ofstream out(tmp);
      out << nlohmann::json{{"key", key}, {"curve", CurveJson(lc)}}.dump() << "\n";
    }
    std::filesystem::rename(tmp, path);  // atomic: a concurrent reader sees the old file or the whole new one
    return lc;
  }

  BootstrapScenario config_;
  Options options_;
};

}  // namespace

ModelPtr BootstrappedModel(const std::string& method_name, const std::vector<std::pair<std::string, nlohmann::json>>& scenario,
                           const std::string& control, ProtocolContext& ctx, LearningCurve* curve) {
  auto method = Methods().Find(method_name).make();
  BootstrapMethod* m = dynamic_cast<BootstrapMethod*>(method.get());
  if (!m) {
    throw BadInput(fmt::format("{}: not a method of the bootstrap protocol (it runs under {})", method_name,
                               method->protocol()));
  }
  if (control != "trained" && !m->UsesSource()) {
    throw BadInput(fmt::format("source={}: {} does not use the source the control replaces (expected trained)", control,
                               method_name));
  }
  BootstrapRun run;
  for (const auto& [key, value] : scenario) {
    if (!run.SetShorthand(key, value, run.options())) run.options().Set(key, value);
  }
  run.CheckScenario();
  run.CheckMethod(*m, method_name);
  Bootstrapped b = run.Core(*m, ctx, control, /*with_reference=*/false, /*need_model=*/true);
  if (curve) *curve = b.curve;
  return b.target;
}

TB_REGISTER_PROTOCOL(bootstrap, BootstrapRun,
                     "start a target architecture from a trained source (or from nothing) and follow its learning "
                     "curve: step-0 accuracy, steps to target_fraction (0.9) of the source, AULC, final, speed-up over random init, "
                     "dead capacity");

}  // namespace tb
