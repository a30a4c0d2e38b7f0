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
#include "experiments/train/language_model.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {

torch::Tensor BootstrapMethod::Loss(BootstrapContext&, const torch::Tensor& logits, const torch::Tensor& /*inputs*/,
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

int64_t StepsToTarget(const LearningCurve& curve, double threshold, bool lower_is_better) {
  for (size_t i = 0; i < curve.steps.size(); ++i) {
    if (lower_is_better ? curve.acc[i] <= threshold : curve.acc[i] >= threshold) return curve.steps[i];
  }
  return -1;
}

std::optional<std::pair<double, bool>> Speedup(int64_t method_steps, int64_t reference_steps, int64_t budget,
                                               int64_t eval_every) {
  if (method_steps < 0) return std::nullopt;
  if (reference_steps == 0) return std::make_pair(method_steps == 0 ? 1.0 : 0.0, false);
  const bool bound = method_steps == 0 || reference_steps < 0;
  const double num = static_cast<double>(reference_steps >= 0 ? reference_steps : budget);
  const double den = static_cast<double>(method_steps == 0 ? eval_every : method_steps);
  return std::make_pair(num / den, bound);
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
  // The text task.
  LmTrainOptions source_lm;
  int64_t seq_len = 32;
  int64_t eval_chars = 8192;
  double target_ratio = 1.1;

  BootstrapScenario() { source_train.epochs = 5; }
  bool text() const { return IsTextCorpus(dataset); }

  void Bind(Options& o) {
    std::vector<std::string> names = DatasetNames();
    for (const auto& n : TextCorpusNames()) names.push_back(n);
    std::sort(names.begin(), names.end());
    o.Add("dataset", &dataset,
          "the task: an image dataset (each image read as 28 steps of 28 features) or a text corpus (character-level "
          "language modelling)",
          names);
    o.Add("data.dir", &data_dir, "directory of IDX files, or of the corpus's text files (overrides the default location)");
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
    source_lm.Bind(o, "source.lm.");
    o.Add("text.seq_len", &seq_len, "text task: characters per window, in training (source and target) and evaluation");
    o.Add("eval.chars", &eval_chars, "text task: test characters the learning curve is evaluated on (0: all)");
    o.Add("target_ratio", &target_ratio,
          "text task: steps_to_target: steps to this multiple of the source's bits per character");
  }
  LmTrainOptions SourceLm() const {
    LmTrainOptions o = source_lm;
    o.seq_len = seq_len;
    return o;
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
  int64_t seq_len;  // the text task's windows
};

using CurveLoss = std::function<torch::Tensor(const torch::Tensor& logits, const torch::Tensor& inputs,
                                              const torch::Tensor& labels)>;

// The task's side of a learning curve: the next batch (inputs, labels as BatchLogits flattens
// them), the training logits, and the evaluation (accuracy, or bits per character).
struct CurveTask {
  std::function<std::pair<torch::Tensor, torch::Tensor>()> next_batch;
  BatchLogits logits;
  std::function<double(Classifier&)> evaluate;
};

// A language model's next-symbol logits at every step, flattened: [N · T, V].
torch::Tensor TextLogits(Classifier& model, const torch::Tensor& ids) {
  auto& lm = dynamic_cast<SequenceClassifier&>(model);
  const auto logits = lm.StepLogits(ids);
  return logits.reshape({-1, logits.size(-1)});
}

// Images: batches from a portable permutation per pass over the training set (seeded as the
// trainer's), whole batches only, never more than the set holds; accuracy on the test images.
CurveTask ImageCurveTask(const BootstrapData& data, const CurveSettings& s, uint64_t seed, torch::Device device) {
  struct State {
    torch::Tensor images, labels, perm;
    int64_t n = 0, batch = 0, i = 0, epoch = 0;
  };
  auto st = std::make_shared<State>();
  st->images = data.fit.images.to(device);
  st->labels = data.fit.labels.to(device);
  st->n = data.fit.size();
  st->batch = std::min(s.batch_size, st->n);
  CurveTask task;
  task.next_batch = [st, seed, device] {
    if (st->n == 0) throw BadInput("the training set is empty (check the classes and data.train_per_class)");
    if (!st->perm.defined() || st->i + st->batch > st->n) {
      const auto order = PortablePermutation(st->n, seed * 1000003ULL + static_cast<uint64_t>(st->epoch++));
      st->perm = torch::tensor(order, torch::kInt64).to(device);
      st->i = 0;
    }
    const auto idx = st->perm.slice(0, st->i, st->i + st->batch);
    st->i += st->batch;
    return std::make_pair(st->images.index_select(0, idx), st->labels.index_select(0, idx));
  };
  task.logits = [](Classifier& model, const torch::Tensor& x) { return model.forward(x); };
  task.evaluate = [&data](Classifier& model) {
    return ClassAccuracy(Logits(model, data.test.images, kMergeEvalBatch), data.test.labels, data.classes);
  };
  return task;
}

// Text: windows of the training split drawn per step (seeded from the run's seed and the step);
// every step's next-symbol logits; bits per character on the test windows.
CurveTask TextCurveTask(const BootstrapData& data, const CurveSettings& s, uint64_t seed, torch::Device device) {
  LmTrainOptions o;
  o.batch_size = s.batch_size;
  o.seq_len = s.seq_len;
  auto step = std::make_shared<int64_t>(0);
  CurveTask task;
  task.next_batch = [&data, o, seed, device, step] {
    const auto w = TrainingWindows(data.corpus->train, o, seed, (*step)++).to(device);
    return std::make_pair(w.slice(1, 0, w.size(1) - 1), w.slice(1, 1, w.size(1)).reshape({-1}));
  };
  task.logits = TextLogits;
  task.evaluate = [&data](Classifier& model) { return BitsPerChar(model, data.eval_windows); };
  return task;
}

// Trains `model` for the budget with `loss`, evaluating at step 0, every eval_every steps and
// at the last.
LearningCurve TrainCurve(Classifier& model, const CurveTask& task, const CurveSettings& s, const CurveLoss& loss_fn,
                         RunLogger* log, const std::string& key) {
  std::vector<torch::Tensor> before;
  for (const auto& p : model.parameters()) before.push_back(p.detach().clone());
  torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(s.lr));
  LearningCurve curve;
  auto evaluate = [&](int64_t step) {
    const double value = task.evaluate(model);
    curve.steps.push_back(step);
    curve.acc.push_back(value);
    if (log) log->Scalar(key, value, step);
  };
  evaluate(0);
  for (int64_t step = 1; step <= s.steps; ++step) {
    const auto [x, y] = task.next_batch();
    model.train();
    optimizer.zero_grad();
    auto loss = loss_fn(task.logits(model, x), x, y);
    loss.backward();
    optimizer.step();
    if (step % s.eval_every == 0 || step == s.steps) evaluate(step);
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
      CheckArchitecture(key, arch, ArchKind::kSequence);
    }
    if (c.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", c.train_per_class));
    if (c.test_per_class < 0) throw BadInput(fmt::format("eval.test_per_class={}: expected >= 0", c.test_per_class));
    CheckTrainOptions(c.source_train, "source.train.");
    if (c.steps < 1) throw BadInput(fmt::format("train.steps={}: expected at least 1", c.steps));
    if (c.eval_every < 1) throw BadInput(fmt::format("train.eval_every={}: expected at least 1", c.eval_every));
    if (!(c.lr > 0)) throw BadInput(fmt::format("train.lr={}: expected > 0", c.lr));
    if (c.batch_size < 1) throw BadInput(fmt::format("train.batch_size={}: expected at least 1", c.batch_size));
    if (c.text()) {
      if (c.source_lm.steps < 0) throw BadInput(fmt::format("source.lm.steps={}: expected >= 0", c.source_lm.steps));
      if (c.source_lm.batch_size < 1) {
        throw BadInput(fmt::format("source.lm.batch_size={}: expected at least 1", c.source_lm.batch_size));
      }
      if (!(c.source_lm.lr > 0)) throw BadInput(fmt::format("source.lm.lr={}: expected > 0", c.source_lm.lr));
      if (c.seq_len < 1 || c.seq_len > 4096) throw BadInput(fmt::format("text.seq_len={}: expected 1..4096", c.seq_len));
      if (c.eval_chars < 0) throw BadInput(fmt::format("eval.chars={}: expected >= 0 (0: the whole test split)", c.eval_chars));
      if (!(c.target_ratio >= 1)) throw BadInput(fmt::format("target_ratio={}: expected >= 1", c.target_ratio));
      const TextCorpus& corpus = LoadTextCorpus(TextSpec{c.dataset, c.data_dir});  // BadInput naming a bad file
      EvaluationWindows(corpus.test, c.seq_len, c.eval_chars);                    // and a window that does not fit
    }
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
    if (config_.text()) {
      const TextCorpus& corpus = LoadTextCorpus(TextSpec{config_.dataset, config_.data_dir});
      return {{"dataset_sha256", corpus.sha256}, {"corpus_package", corpus.package}};
    }
    return {{"dataset_sha256", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).sha256}};
  }
  std::string ScenarioName() const override {
    if (config_.text()) return fmt::format("{}-{}-chars", config_.arch_b, config_.arch_a);
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
    const auto seed = static_cast<uint64_t>(ctx.seed);
    BootstrapData data;
    Zoo zoo(ctx.paths.zoo_dir(), ctx.store);
    ZooEntry source;
    std::string identity;  // of the task, for the reference curve's key
    if (c.text()) {
      data.corpus = &LoadTextCorpus(TextSpec{c.dataset, c.data_dir});
      data.eval_windows = EvaluationWindows(data.corpus->test, c.seq_len, c.eval_chars);
      identity = data.corpus->sha256;
      // The source: a language model of the zoo, trained on the training split.
      const LmTrainOptions lm = c.SourceLm();
      const nlohmann::json spec = {{"kind", "language model"},       {"corpus", data.corpus->name},
                                   {"corpus_sha256", data.corpus->sha256}, {"arch", c.arch_b},
                                   {"vocab", data.corpus->vocab()},  {"seed", seed},
                                   {"train", lm.ToJson()},           {"lm_trainer_version", kLmTrainerVersion},
                                   {"sequence_models", kSequenceModelVersion},
                                   {"device", ctx.device.is_cuda() ? "cuda" : "cpu"},
                                   {"threads", at::get_num_threads()}, {"blas", ctx.blas}};
      const LmTrainOptions lm_options = lm;
      source = zoo.GetOrTrain(spec, SourceSpec(), seed, ctx.device, [&](Classifier& model, double& seconds) {
        const auto t0 = std::chrono::steady_clock::now();
        const double loss = TrainLanguageModel(model, data.corpus->train, lm_options, seed, &ctx.log, "zoo/source/");
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return nlohmann::json{
            {"loss", loss},
            {"val_bpc", BitsPerChar(model, EvaluationWindows(data.corpus->validation, c.seq_len, c.eval_chars))}};
      });
      ctx.log.Text(fmt::format("source {} on {}: {} ({})", c.arch_b, c.dataset,
                               source.trained ? "trained" : "from the zoo", source.hash.substr(0, 12)));
    } else {
      const ::tb::Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
      data.dataset = &ds;
      data.classes = c.classes;
      std::tie(data.fit, data.val) =
          ZooTrainingData(ds, c.classes, c.train_per_class, c.source_train.val_fraction, seed);
      data.test = LimitPerClass(SelectClasses(ds.test, c.classes), c.test_per_class);
      identity = ds.sha256;
      // The source, from the zoo, and its accuracy: the target's goal.
      source = zoo.Get(ProtocolZooRequest(ds, SourceSpec(), c.classes, seed, -1, c.source_train, c.train_per_class, ctx),
                       &ctx.log, "zoo/source/");
      ctx.log.Text(fmt::format("source {} on {}: {} ({})", c.arch_b, fmt::join(c.classes, ","),
                               source.trained ? "trained" : "from the zoo", source.hash.substr(0, 12)));
    }
    const CurveSettings settings{c.steps, c.eval_every, c.batch_size, c.lr, c.seq_len};
    auto make_task = [&] {
      return data.text() ? TextCurveTask(data, settings, seed, ctx.device)
                         : ImageCurveTask(data, settings, seed, ctx.device);
    };
    Bootstrapped out;
    out.source_acc = make_task().evaluate(*source.model);
    const ModelSpec target_spec = TargetSpec();
    auto fresh_target = [&] {
      torch::manual_seed(seed * 7919ULL + 4242);
      ModelPtr t = MakeModel(target_spec);
      t->to(ctx.device);
      return t;
    };
    auto cross_entropy = [](const torch::Tensor& logits, const torch::Tensor&, const torch::Tensor& labels) {
      return torch::nn::functional::cross_entropy(logits, labels);
    };
    const std::string curve_key = c.text() ? "curve/bpc" : "curve/acc";
    const std::string reference_key = c.text() ? "curve/random_init_bpc" : "curve/random_init_acc";

    // The random-init reference: the target from its own initialisation, same budget and
    // batches; trained once per (data, target, seed, budget) and cached.
    if (with_reference) {
      out.reference = ReferenceCurve(ctx, identity, target_spec, settings, seed, reference_key, [&] {
        ModelPtr t = fresh_target();
        return TrainCurve(*t, make_task(), settings, cross_entropy, &ctx.log, reference_key);
      });
    }

    const auto t0 = std::chrono::steady_clock::now();
    BootstrapContext bc{data, SourceControl(source.model, control, seed, ctx.device), fresh_target(), ctx.device,
                        ctx.log, seed};
    if (data.text()) bc.logits = TextLogits;
    torch::manual_seed(seed + 99);
    out.diagnostics = m.Initialise(bc);
    bc.target->to(ctx.device);
    out.init_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (m.IsReference() && with_reference && !need_model) {
      out.curve = out.reference;
      for (size_t i = 0; i < out.curve.steps.size(); ++i) ctx.log.Scalar(curve_key, out.curve.acc[i], out.curve.steps[i]);
    } else {
      out.curve = TrainCurve(*bc.target, make_task(), settings,
                             [&](const torch::Tensor& logits, const torch::Tensor& x, const torch::Tensor& y) {
                               return m.Loss(bc, logits, x, y);
                             },
                             &ctx.log, curve_key);
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
    const bool text = c.text();
    const Bootstrapped b = Core(m, ctx, ctx.source, /*with_reference=*/true, /*need_model=*/false);
    // The goal: target_fraction of the source's accuracy, or target_ratio × its bits per char.
    const double threshold = text ? c.target_ratio * b.source_acc : c.target_fraction * b.source_acc;
    const std::string unit = text ? "_bpc" : "";

    MetricMap summary;
    summary[text ? "source_bpc" : "source_acc"] = b.source_acc;
    summary["threshold"] = threshold;
    summary["target_params"] = static_cast<double>(CountParameters(*b.target));
    auto describe = [&](const std::string& prefix, const LearningCurve& lc) {
      summary[prefix + "step0" + unit] = lc.acc.front();
      summary[prefix + "final" + unit] = lc.acc.back();
      summary[prefix + "aulc" + unit] = AreaUnderCurve(lc);
      summary[prefix + "dead_capacity"] = lc.dead_capacity;
      const int64_t st = StepsToTarget(lc, threshold, /*lower_is_better=*/text);
      summary[prefix + "target_reached"] = st >= 0 ? 1.0 : 0.0;
      summary[prefix + "steps_to_target"] = st >= 0 ? static_cast<double>(st) : std::nan("");
      return st;
    };
    const int64_t method_steps = describe("", b.curve);
    const int64_t reference_steps = describe("random_init/", b.reference);
    if (auto s = Speedup(method_steps, reference_steps, c.steps, c.eval_every)) {
      summary["speedup"] = s->first;
      summary["speedup_bound"] = s->second ? 1.0 : 0.0;
    }
    // Positive when the method's curve is better on average than random init's.
    const double gain = summary["aulc" + unit] - summary["random_init/aulc" + unit];
    summary["aulc_gain"] = text ? -gain : gain;
    summary["time/method_seconds"] = b.seconds;
    summary["time/init_seconds"] = b.init_seconds;
    for (const auto& [k, v] : b.diagnostics) summary[ctx.method + "/" + k] = v;
    return summary;
  }

 private:
  ModelSpec SourceSpec() const { return TaskSpec(config_.arch_b); }
  ModelSpec TargetSpec() const { return TaskSpec(config_.arch_a); }
  ModelSpec TaskSpec(const std::string& arch) const {
    if (config_.text()) {
      const int64_t v = LoadTextCorpus(TextSpec{config_.dataset, config_.data_dir}).vocab();
      return ModelSpec{arch, "relu", "default", v, v};
    }
    return ModelSpec{arch, "relu", "default", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).num_classes};
  }

  std::pair<ModelPtr, ModelPtr> FreshPair() const {
    // Made for checks only: torch's generator is left as it was.
    GeneratorStateGuard keep;
    torch::manual_seed(0);
    ModelPtr source = MakeModel(SourceSpec());
    ModelPtr target = MakeModel(TargetSpec());
    return {source, target};
  }

  LearningCurve ReferenceCurve(ProtocolContext& ctx, const std::string& identity, const ModelSpec& target,
                               const CurveSettings& s, uint64_t seed, const std::string& metric,
                               const std::function<LearningCurve()>& train) {
    const BootstrapScenario& c = config_;
    nlohmann::json key = {{"kind", "bootstrap random-init curve"}, {"version", kCurveVersion},
                          {"trainer", kTrainerVersion},             {"dataset_sha256", identity},
                          {"arch", target.arch},                    {"num_classes", target.num_classes},
                          {"classes", c.classes},                   {"train_per_class", c.train_per_class},
                          {"val_fraction", c.source_train.val_fraction}, {"test_per_class", c.test_per_class},
                          {"steps", s.steps},                       {"eval_every", s.eval_every},
                          {"lr", s.lr},                             {"batch_size", s.batch_size},
                          {"seed", seed},                           {"threads", at::get_num_threads()},
                          {"sequence_models", kSequenceModelVersion},
                          {"blas", ctx.blas},                       {"device", ctx.device.str()}};
    if (c.text()) {
      // The text task's own settings (the image ones above are then inert but harmless).
      key["task"] = "chars";
      key["vocab"] = target.vocab;
      key["seq_len"] = s.seq_len;
      key["eval_chars"] = c.eval_chars;
    }
    const std::string dir = ctx.paths.zoo_dir() + "/curves";
    const std::string path = dir + "/" + JsonHash(key) + ".json";
    if (std::ifstream in(path); in) {
      try {
        const auto j = nlohmann::json::parse(in);
        if (j.at("key") == key) {
          LearningCurve lc = CurveFromJson(j.at("curve"));
          for (size_t i = 0; i < lc.steps.size(); ++i) ctx.log.Scalar(metric, lc.acc[i], lc.steps[i]);
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
