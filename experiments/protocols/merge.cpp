#include "experiments/protocols/merge.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/losses/loss.h"
#include "experiments/merge/merging.h"
#include "experiments/protocols/protocol.h"
#include "experiments/merge/merger.h"
#include "experiments/merge/merger_diagnostics.h"
#include "experiments/train/zoo.h"
#include "experiments/train/zoo_grid.h"
#include "store/hash.h"
#include "store/errors.h"

namespace tb {

double ClassAccuracy(const torch::Tensor& logits, const torch::Tensor& labels, const std::vector<int64_t>& classes,
                     const std::vector<int64_t>& restrict_to) {
  torch::Tensor predictions;
  if (restrict_to.empty()) {
    predictions = logits.argmax(1);
  } else {
    const auto idx = torch::tensor(restrict_to, torch::kInt64);
    predictions = idx.index_select(0, logits.index_select(1, idx).argmax(1));
  }
  return Accuracy(predictions, labels, classes);
}

Split Subsample(const Split& split, int64_t n, uint64_t seed) {
  if (n >= split.size()) return split;
  auto order = PortablePermutation(split.size(), seed);
  order.resize(static_cast<size_t>(n));
  const auto idx = torch::tensor(order, torch::kInt64);
  return {split.images.index_select(0, idx), split.labels.index_select(0, idx)};
}

torch::Tensor Rotate(const torch::Tensor& images, double degrees) {
  namespace F = torch::nn::functional;
  const double r = degrees * M_PI / 180.0;
  const int64_t n = images.size(0);
  auto theta = torch::tensor({std::cos(r), -std::sin(r), 0.0, std::sin(r), std::cos(r), 0.0}, images.options())
                   .reshape({1, 2, 3})
                   .expand({n, 2, 3});
  auto x = images.reshape({n, 1, 28, 28});
  auto grid = F::affine_grid(theta, {n, 1, 28, 28}, /*align_corners=*/false);
  return F::grid_sample(x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
}

double ChooseLambda(const std::function<ModelPtr(double)>& make, const Split& val, double max, double step) {
  double best = 0, best_acc = -1;
  const int64_t points = static_cast<int64_t>(std::floor(max / step + 1e-9));
  for (int64_t i = 0; i <= points; ++i) {
    const double lambda = static_cast<double>(i) * step;
    ModelPtr m = make(lambda);
    const double acc = Predict(*m, val.images, kMergeEvalBatch).eq(val.labels).to(torch::kDouble).mean().item<double>();
    if (acc > best_acc) {
      best_acc = acc;
      best = lambda;
    }
  }
  return best;
}

namespace {

struct MergeScenario {
  std::string dataset = "mnist";
  std::string data_dir;
  int64_t train_per_class = 0;
  std::vector<int64_t> classes_1{0, 1, 2, 3, 4};
  std::vector<int64_t> classes_2{5, 6, 7, 8, 9};
  std::string arch = "cnn2464";
  std::string activation = "relu";
  std::string init = "kaiming_uniform";
  std::string parents_init = "shared";
  TrainOptions train;
  std::vector<int64_t> finetune_epochs{0, 1, 2, 5};
  double finetune_lr = 1e-3;
  int64_t finetune_batch_size = 64;
  int64_t finetune_eval_every = 10;
  double shift_degrees = 30;
  std::string zoo_grid;
  int64_t zoo_bin = 0;

  MergeScenario() {
    train.epochs = 11;  // the report's first checkpoint bin
    train.early_stopping = true;
  }

  void Bind(Options& o) {
    o.Add("dataset", &dataset, "dataset name", DatasetNames());
    o.Add("data.dir", &data_dir, "directory of IDX files (overrides the dataset's default location)");
    o.Add("data.train_per_class", &train_per_class, "use at most this many training images per class (0: all)");
    o.Add("classes_1", &classes_1, "C1: classes the first parent W1 is trained on");
    o.Add("classes_2", &classes_2, "C2: classes the second parent W2 is trained on (disjoint from C1)");
    o.Add("arch", &arch, "architecture of both parents and the merged model");
    o.Add("activation", &activation, "hidden activation", ActivationNames());
    o.Add("init", &init, "weight initialisation", InitNames());
    o.Add("parents_init", &parents_init,
          "shared: both parents start from one initial checkpoint (the report's setting); different: from two",
          {"shared", "different"});
    train.Bind(o, "train.");
    o.Add("finetune.epochs", &finetune_epochs,
          "fine-tuning epochs after which the merged model is evaluated on C1 ∪ C2 (0: as merged)");
    o.Add("finetune.lr", &finetune_lr, "Adam learning rate of the fine-tuning");
    o.Add("finetune.batch_size", &finetune_batch_size, "minibatch size of the fine-tuning");
    o.Add("finetune.eval_every", &finetune_eval_every, "steps between the IID evaluations that catch-up counts");
    o.Add("shift.degrees", &shift_degrees, "shift_acc: rotation of the C1 ∪ C2 test images, in degrees");
    o.Add("zoo.grid", &zoo_grid,
          "take W1, W2 and the union model from this zoo grid (experiments/zoos/NAME.json, built by `transferbench zoo "
          "build`; the grid's training settings and data split apply, train.* do not); empty: trained on demand");
    o.Add("zoo.bin", &zoo_bin, "with zoo.grid: the checkpoint bin (epoch) the models are taken at (0: the grid's first)");
  }

  std::vector<int64_t> Union() const {
    std::vector<int64_t> u = classes_1;
    u.insert(u.end(), classes_2.begin(), classes_2.end());
    std::sort(u.begin(), u.end());
    return u;
  }
};

// Parent 1, parent 2, the union model: their batch-order seeds; their initial checkpoints' seeds.
uint64_t Seed1(int64_t seed) { return static_cast<uint64_t>(seed); }
uint64_t Seed2(int64_t seed) { return static_cast<uint64_t>(seed) + 1000; }
uint64_t SeedUnion(int64_t seed) { return static_cast<uint64_t>(seed) + 2000; }
int64_t InitSeed1(int64_t seed) { return seed; }
int64_t InitSeed2(int64_t seed, const MergeScenario& c) { return c.parents_init == "shared" ? seed : seed + 1000; }

// The parents' training and validation data: the split each parent was trained on (seed1,
// seed2), so no validation image of the methods was a training image of a parent.
MergeData BuildData(const Dataset& ds, const MergeScenario& c, uint64_t seed1, uint64_t seed2, int64_t train_per_class,
                    double val_fraction) {
  MergeData d;
  d.dataset = &ds;
  d.classes_1 = c.classes_1;
  d.classes_2 = c.classes_2;
  d.classes = c.Union();
  std::tie(d.train_1, d.val_1) = ZooTrainingData(ds, c.classes_1, train_per_class, val_fraction, seed1);
  std::tie(d.train_2, d.val_2) = ZooTrainingData(ds, c.classes_2, train_per_class, val_fraction, seed2);
  d.train = ConcatSplits({d.train_1, d.train_2});
  d.val = ConcatSplits({d.val_1, d.val_2});
  d.test = SelectClasses(ds.test, d.classes);
  return d;
}

using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

LogitsFn LogitsOf(const ModelPtr& m) {
  return [m](const torch::Tensor& images) { return Logits(*m, images, kMergeEvalBatch); };
}

double CrossEntropy(Classifier& m, const Split& s) {
  return torch::nn::functional::cross_entropy(Logits(m, s.images, kMergeEvalBatch), s.labels).item<double>();
}

// The first evaluated step at which the IID curve reaches `target` (NaN if never).
double StepsTo(const std::vector<std::pair<int64_t, double>>& curve, double target) {
  for (const auto& [step, acc] : curve) {
    if (acc >= target) return static_cast<double>(step);
  }
  return std::nan("");
}

MergeMethod& AsMerge(Method& method) {
  auto* m = dynamic_cast<MergeMethod*>(&method);
  if (!m) throw std::logic_error("merge protocol given a method that is not a MergeMethod");
  return *m;
}

class MergeRun : public ProtocolRun {
 public:
  MergeRun() { config_.Bind(options_); }
  MergeRun(const MergeRun&) = delete;  // options_ points into config_
  MergeRun& operator=(const MergeRun&) = delete;
  Options& options() override { return options_; }

  void CheckScenario() override {
    MergeScenario& c = config_;
    CheckClassList("classes_1", c.classes_1);
    CheckClassList("classes_2", c.classes_2);
    for (int64_t k : c.classes_2) {
      if (std::find(c.classes_1.begin(), c.classes_1.end(), k) != c.classes_1.end()) {
        throw BadInput(fmt::format("classes_2={}: class {} is also in classes_1={} (expected disjoint class sets)",
                                   fmt::join(c.classes_2, ","), k, fmt::join(c.classes_1, ",")));
      }
    }
    CheckArchitecture("arch", c.arch, ArchKind::kImage);
    if (c.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", c.train_per_class));
    CheckTrainOptions(c.train, "train.");
    if (c.finetune_epochs.empty()) throw BadInput("finetune.epochs: expected at least one epoch (0: as merged)");
    for (int64_t e : c.finetune_epochs) {
      if (e < 0 || e > 1000) {
        throw BadInput(fmt::format("finetune.epochs={}: epoch {} out of range 0..1000", fmt::join(c.finetune_epochs, ","), e));
      }
    }
    std::sort(c.finetune_epochs.begin(), c.finetune_epochs.end());
    c.finetune_epochs.erase(std::unique(c.finetune_epochs.begin(), c.finetune_epochs.end()), c.finetune_epochs.end());
    TrainOptions ft;
    ft.lr = c.finetune_lr;
    ft.batch_size = c.finetune_batch_size;
    CheckTrainOptions(ft, "finetune.");
    if (c.finetune_eval_every < 1) throw BadInput(fmt::format("finetune.eval_every={}: expected >= 1", c.finetune_eval_every));
    std::sort(c.classes_1.begin(), c.classes_1.end());
    std::sort(c.classes_2.begin(), c.classes_2.end());
    grid_.reset();
    if (!c.zoo_grid.empty()) {
      CheckGrid(c);
    } else if (c.zoo_bin != 0) {
      throw BadInput(fmt::format("zoo.bin={}: only with zoo.grid (the parents come from the zoo cache otherwise)", c.zoo_bin));
    }
  }

  void CheckSeed(int64_t seed) override {
    if (!grid_) return;
    const auto& seeds = grid_->seeds;
    const auto at = std::find(seeds.begin(), seeds.end(), seed);
    if (at == seeds.end()) {
      throw BadInput(fmt::format("seed={}: zoo grid {} has no models of that seed (its seeds: {})", seed, grid_->name,
                                 fmt::join(seeds, ",")));
    }
    if (config_.parents_init == "different" && at + 1 == seeds.end()) {
      throw BadInput(fmt::format("seed={}: parents_init=different takes W2 from the grid's next seed, and {} is the last of "
                                 "zoo grid {}'s seeds ({})", seed, seed, grid_->name, fmt::join(seeds, ",")));
    }
  }

  void CheckMethod(Method& method, const std::string& method_name) override {
    MergeMethod& m = AsMerge(method);
    m.Check();
    if (m.NeedsZooGrid()) {
      if (!grid_) {
        throw BadInput(fmt::format("{}: learns from a zoo grid's models (expected zoo.grid=NAME, e.g. zoo.grid=report_relu)",
                                   method_name));
      }
      m.CheckPair(config_.classes_1, config_.classes_2);
    }
  }

  nlohmann::json Identity() override {
    nlohmann::json id = {{"dataset_sha256", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).sha256}};
    if (grid_) id["zoo_grid_models"] = JsonHash(GridModelKey(*grid_));  // what the grid's models are trained with
    return id;
  }
  std::string ScenarioName() const override {
    return fmt::format("C{}-C{}-{}", fmt::join(config_.classes_1, ""), fmt::join(config_.classes_2, ""), config_.parents_init);
  }
  std::string Dataset() const override { return config_.dataset; }
  std::string Label() const override {
    return fmt::format("{} {} {} {}+{} {} init", config_.dataset, config_.arch, config_.activation,
                       fmt::join(config_.classes_1, ""), fmt::join(config_.classes_2, ""), config_.parents_init);
  }
  std::string Describe(const Method& method) const override {
    const auto* m = dynamic_cast<const MergeMethod*>(&method);
    return m && m->IsReference() ? "a reference row of the merge table (not a merge of the two parents)\n" : "";
  }

  MetricMap Execute(Method& method, ProtocolContext& ctx) override {
    MergeMethod& m = AsMerge(method);
    if (ctx.source != "trained" && !m.UsesParents()) {
      throw BadInput(fmt::format("source={}: {} does not use the parents the control replaces (expected source=trained)",
                                 ctx.source, ctx.method));
    }
    const MergeScenario& c = config_;
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    const ::tb::Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
    MergeData data;
    ZooEntry p1, p2, un;
    if (grid_) {
      // The grid's units: W1 and the union model at the run's seed, W2 at it too (shared init)
      // or at the grid's next seed (a different initial checkpoint).
      CheckSeed(ctx.seed);
      const auto& seeds = grid_->seeds;
      const auto at = std::find(seeds.begin(), seeds.end(), ctx.seed);
      const int64_t seed2 = c.parents_init == "shared" ? ctx.seed : *(at + 1);
      data = BuildData(ds, c, static_cast<uint64_t>(ctx.seed), static_cast<uint64_t>(seed2), grid_->train_per_class,
                       grid_->train.val_fraction);
      const std::vector<ModelRecord> checkpoints = GridCheckpoints(ctx.store, *grid_);  // read once
      p1 = GridEntry(ctx, ds, checkpoints, c.classes_1, ctx.seed);
      p2 = GridEntry(ctx, ds, checkpoints, c.classes_2, seed2);
      un = GridEntry(ctx, ds, checkpoints, data.classes, ctx.seed);
    } else {
      data = BuildData(ds, c, Seed1(ctx.seed), Seed2(ctx.seed), c.train_per_class, c.train.val_fraction);
      Zoo zoo(ctx.paths.zoo_dir(), ctx.store);
      auto request = [&](const std::vector<int64_t>& classes, uint64_t seed, int64_t init_seed) {
        return ProtocolZooRequest(ds, ModelSpec{c.arch, c.activation, c.init, ds.num_classes}, classes, seed, init_seed,
                                  c.train, c.train_per_class, ctx);
      };
      p1 = zoo.Get(request(c.classes_1, Seed1(ctx.seed), InitSeed1(ctx.seed)), &ctx.log, "zoo/parent1/");
      p2 = zoo.Get(request(c.classes_2, Seed2(ctx.seed), InitSeed2(ctx.seed, c)), &ctx.log, "zoo/parent2/");
      un = zoo.Get(request(data.classes, SeedUnion(ctx.seed), InitSeed1(ctx.seed)), &ctx.log, "zoo/union/");
    }
    for (const auto& [what, e, classes] : {std::tuple{"parent W1", &p1, c.classes_1}, std::tuple{"parent W2", &p2, c.classes_2},
                                           std::tuple{"union model", &un, data.classes}}) {
      ctx.log.Text(fmt::format("{} {} on {}: {} ({})", what, c.arch, fmt::join(classes, ","),
                               e->trained ? "trained" : "from the zoo", e->hash.substr(0, 12)));
    }
    torch::manual_seed(static_cast<uint64_t>(InitSeed1(ctx.seed)));
    ModelPtr init = MakeModel(ModelSpec{c.arch, c.activation, c.init, ds.num_classes});
    init->to(ctx.device);
    init->eval();
    ModelPtr parent2 = m.HandlesSource() ? CloneModel(p2.model) : SourceControl(p2.model, ctx.source, Seed2(ctx.seed), ctx.device);

    MergeZooSource zoo_source;
    if (grid_) {
      zoo_source = MergeZooSource{&*grid_, c.zoo_bin, ds.sha256, c.activation, c.init, ctx.seed, &ctx.store,
                                  ctx.paths.zoo_dir(), static_cast<int64_t>(torch::get_num_threads()), ctx.blas, ctx.source};
    }
    MergeContext mctx{data, CloneModel(p1.model), parent2, CloneModel(init), CloneModel(un.model),
                      ctx.device, ctx.log, static_cast<uint64_t>(ctx.seed), grid_ ? &zoo_source : nullptr};
    torch::manual_seed(static_cast<uint64_t>(ctx.seed));
    const double method_start = elapsed();
    MergeResult result = m.Merge(mctx);
    const double method_seconds = elapsed() - method_start;

    MetricMap summary;
    // What the merged model is measured against: the trained parents on their own classes, the
    // union model on C1 ∪ C2.
    const torch::Tensor test_labels = data.test.labels;
    const torch::Tensor l1 = Logits(*p1.model, data.test.images, kMergeEvalBatch), l2 = Logits(*p2.model, data.test.images, kMergeEvalBatch);
    const double parent1_acc = ClassAccuracy(l1, test_labels, c.classes_1);
    const double parent2_acc = ClassAccuracy(l2, test_labels, c.classes_2);
    const double parents_acc = (parent1_acc + parent2_acc) / 2;
    const double union_acc = ClassAccuracy(Logits(*un.model, data.test.images, kMergeEvalBatch), test_labels, data.classes);
    summary["parent1_acc"] = parent1_acc;
    summary["parent2_acc"] = parent2_acc;
    summary["parents_acc"] = parents_acc;
    summary["union_acc"] = union_acc;

    const LogitsFn f = result.logits ? result.logits : LogitsOf(result.model);
    const torch::Tensor logits = f(data.test.images);
    summary["iid_acc"] = ClassAccuracy(logits, test_labels, data.classes);
    summary["joint_acc"] = ClassAccuracy(logits, test_labels, data.classes, data.classes);
    const double task1 = ClassAccuracy(logits, test_labels, c.classes_1, c.classes_1);
    const double task2 = ClassAccuracy(logits, test_labels, c.classes_2, c.classes_2);
    summary["per_task_acc"] = (task1 + task2) / 2;
    summary["normalized_acc"] = (task1 / ClassAccuracy(l1, test_labels, c.classes_1, c.classes_1) +
                                 task2 / ClassAccuracy(l2, test_labels, c.classes_2, c.classes_2)) / 2;
    const torch::Tensor predictions = logits.argmax(1);
    summary["collapse"] = torch::bincount(predictions, {}, 10).max().item<double>() / static_cast<double>(predictions.size(0));
    std::vector<int64_t> outside;
    for (int64_t k = 0; k < ds.num_classes; ++k) {
      if (!std::binary_search(data.classes.begin(), data.classes.end(), k)) outside.push_back(k);
    }
    if (!outside.empty()) {
      const Split ood = SelectClasses(ds.test, outside);
      summary["ood_acc"] = ClassAccuracy(f(ood.images), ood.labels, outside);
    }
    summary["shift_acc"] = ClassAccuracy(f(Rotate(data.test.images, c.shift_degrees)), test_labels, data.classes);

    if (!m.IsReference()) {
      // Loss barriers on the straight path from W1 to W2 (as the method aligned it).
      const Weights w1 = GetWeights(*mctx.parent1);
      const Weights w2 = GetWeights(result.aligned_parent2 ? *result.aligned_parent2 : *parent2);
      std::vector<double> loss;
      for (int i = 0; i <= 10; ++i) {
        ModelPtr point = FromWeights(init->spec(), Interpolate(w1, w2, i / 10.0), ctx.device);
        loss.push_back(CrossEntropy(*point, data.test));
      }
      double chord = -INFINITY, peak = -INFINITY;
      for (int i = 0; i <= 10; ++i) {
        const double t = i / 10.0;
        chord = std::max(chord, loss[i] - ((1 - t) * loss.front() + t * loss.back()));
        peak = std::max(peak, loss[i]);
      }
      summary["barrier_chord"] = chord;
      summary["barrier_rebasin"] = peak - (loss.front() + loss.back()) / 2;
    }

    if (result.model && !result.logits) {
      for (const auto& [k, v] : WeightDiagnostics(*result.model)) summary[k] = v;
      // How far the merged weights are from the true union model's (before fine-tuning).
      summary["union_weight_mse"] = (FlatWeights(*result.model) - FlatWeights(*un.model)).pow(2).mean().item<double>();
      // Metric-only losses (the bottleneck distance), between the merged and the union model.
      LossInputs between;
      DescribeModel(between, result.model->spec());
      between.predicted = FlatWeights(*result.model).to(torch::kDouble);
      between.target = FlatWeights(*un.model).to(torch::kDouble);
      for (const auto& name : Losses().Names()) {
        auto metric = Losses().Find(name).make();
        if (metric->IsMetric()) summary["union_" + name] = metric->Compute(between).item<double>();
      }
      summary["parent1/mp/share_outside"] = WeightDiagnostics(*p1.model).at("mp/share_outside");
      summary["parent2/mp/share_outside"] = WeightDiagnostics(*parent2).at("mp/share_outside");
      // Persistent homology of every weight layer's neurons: the merged model and the zoo's.
      for (const auto& [prefix, model] : {std::pair{"", result.model}, std::pair{"parent1/", p1.model},
                                          std::pair{"parent2/", parent2}, std::pair{"union/", un.model}}) {
        for (const auto& [k, v] : NetworkTopology(FlatWeights(*model).to(torch::kDouble), between)) {
          summary[std::string(prefix) + k] = v;
        }
      }
      FineTune(result.model, data, c, ctx, parents_acc, union_acc, summary);
    }
    for (const auto& [key, value] : result.diagnostics) summary[ctx.method + "/" + key] = value;
    summary["time/method_seconds"] = method_seconds;
    if (grid_) {
      // The epoch each model stopped at (a unit that stopped early: before the bin asked for).
      summary["zoo/parent1_epoch"] = p1.metrics.value("epoch", 0.0);
      summary["zoo/parent2_epoch"] = p2.metrics.value("epoch", 0.0);
      summary["zoo/union_epoch"] = un.metrics.value("epoch", 0.0);
    }
    summary["zoo/parent1_trained"] = p1.trained ? 1 : 0;
    summary["zoo/parent2_trained"] = p2.trained ? 1 : 0;
    summary["zoo/union_trained"] = un.trained ? 1 : 0;
    return summary;
  }

 private:
  // zoo.grid: the grid exists and holds models of the scenario's classes, activation, init and bin.
  void CheckGrid(MergeScenario& c) {
    ZooGrid g = LoadZooGrid(c.zoo_grid);
    // One name per grid in every config: a built-in grid by its name, any other by its absolute path.
    std::error_code ec;
    const bool builtin = std::filesystem::equivalent(g.path, std::filesystem::path(ZoosDir()) / (g.name + ".json"), ec);
    c.zoo_grid = builtin ? g.name : std::filesystem::absolute(g.path).lexically_normal().string();
    auto require = [&](bool ok, const std::string& what, const std::string& value, const std::string& has) {
      if (!ok) throw BadInput(fmt::format("{}={}: zoo grid {} has no such models (it has {})", what, value, g.name, has));
    };
    require(c.dataset == g.dataset, "dataset", c.dataset, g.dataset);
    require(c.arch == g.arch, "arch", c.arch, g.arch);
    require(c.data_dir == g.data_dir, "data.dir", c.data_dir.empty() ? "(the dataset's default)" : c.data_dir,
            g.data_dir.empty() ? "the dataset's default" : g.data_dir);
    require(std::count(g.activations.begin(), g.activations.end(), c.activation) > 0, "activation", c.activation,
            fmt::format("{}", fmt::join(g.activations, ", ")));
    require(std::count(g.inits.begin(), g.inits.end(), c.init) > 0, "init", c.init, fmt::format("{}", fmt::join(g.inits, ", ")));
    if (c.zoo_bin == 0) c.zoo_bin = g.checkpoints.front();
    require(std::count(g.checkpoints.begin(), g.checkpoints.end(), c.zoo_bin) > 0, "zoo.bin", std::to_string(c.zoo_bin),
            fmt::format("checkpoints {}", fmt::join(g.checkpoints, ",")));
    for (const auto& [what, classes] : {std::pair{"classes_1", c.classes_1}, std::pair{"classes_2", c.classes_2},
                                        std::pair{"classes_1 ∪ classes_2", c.Union()}}) {
      require(std::count(g.subsets.begin(), g.subsets.end(), classes) > 0, what, fmt::format("{}", fmt::join(classes, ",")),
              fmt::format("{} class subsets", g.subsets.size()));
    }
    require(c.parents_init == "shared" || g.seeds.size() >= 2, "parents_init", c.parents_init,
            "one seed: every model shares its initial checkpoint");
    if (c.train_per_class != 0 && c.train_per_class != g.train_per_class) {
      throw BadInput(fmt::format("data.train_per_class={}: zoo grid {} was trained with {} (leave it unset with zoo.grid)",
                                 c.train_per_class, g.name, g.train_per_class));
    }
    grid_ = std::move(g);
  }

  ZooEntry GridEntry(ProtocolContext& ctx, const ::tb::Dataset& ds, const std::vector<ModelRecord>& checkpoints,
                     const std::vector<int64_t>& classes, int64_t seed) {
    const MergeScenario& c = config_;
    const auto r = FindGridCheckpoint(checkpoints, ds.sha256, classes, c.activation, c.init, seed, c.zoo_bin);
    if (!r) {
      throw BadInput(fmt::format("zoo.grid={}: no model on classes {} ({} {} seed {}) at epoch bin {} in this results "
                                 "directory (run `transferbench zoo build {}` first)",
                                 grid_->name, fmt::join(classes, ","), c.activation, c.init, seed, c.zoo_bin, c.zoo_grid));
    }
    ZooEntry e;
    e.model = MakeModel(ModelSpec{c.arch, c.activation, c.init, ds.num_classes});
    LoadModel(*e.model, r->path);
    e.model->to(ctx.device);
    e.model->eval();
    e.hash = r->hash;
    e.metrics = r->metrics;
    ctx.log.Text(fmt::format("zoo grid {}: {} (bin {}, trained {} epochs)", grid_->name, r->hash.substr(0, 12),
                             r->spec.value("bin", 0), r->metrics.value("epoch", 0)));
    return e;
  }

  // Fine-tunes a copy of the merged model on C1 ∪ C2 up to the last of finetune.epochs, with an
  // IID evaluation every eval_every steps and after every epoch: iid_acc_ft<e>, catch-up,
  // steps_to_90 and stability.
  void FineTune(const ModelPtr& merged, const MergeData& data, const MergeScenario& c, ProtocolContext& ctx,
                double parents_acc, double union_acc, MetricMap& summary) {
    const int64_t epochs = c.finetune_epochs.back();
    ModelPtr model = CloneModel(merged);
    const torch::Tensor test_labels = data.test.labels;
    auto iid = [&] { return ClassAccuracy(Logits(*model, data.test.images, kMergeEvalBatch), test_labels, data.classes); };
    std::vector<std::pair<int64_t, double>> curve{{0, iid()}};
    std::vector<double> per_epoch{curve.front().second};
    ctx.log.Scalar("finetune/iid_acc", curve.front().second, 0);
    auto images = data.train.images.to(ctx.device);
    auto labels = data.train.labels.to(ctx.device);
    torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(c.finetune_lr));
    const int64_t n = data.train.size();
    int64_t step = 0;
    for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
      model->train();
      const auto perm = torch::tensor(PortablePermutation(n, (static_cast<uint64_t>(ctx.seed) + 3000) * 1000003ULL +
                                                                 static_cast<uint64_t>(epoch)),
                                      torch::kInt64)
                            .to(ctx.device);
      for (int64_t i = 0; i < n; i += c.finetune_batch_size) {
        auto idx = perm.slice(0, i, std::min(i + c.finetune_batch_size, n));
        TrainStep(*model, optimizer, images.index_select(0, idx), labels.index_select(0, idx));
        ++step;
        if (step % c.finetune_eval_every == 0) {
          curve.emplace_back(step, iid());
          model->train();
        }
      }
      if (curve.back().first != step) curve.emplace_back(step, iid());
      per_epoch.push_back(curve.back().second);
      ctx.log.Scalar("finetune/iid_acc", curve.back().second, step);
    }
    model->eval();
    for (int64_t e : c.finetune_epochs) {
      if (e > 0) summary[fmt::format("iid_acc_ft{}", e)] = per_epoch[e];
    }
    if (epochs == 0) return;
    const double catchup_parents = StepsTo(curve, parents_acc);
    const double catchup_union = StepsTo(curve, union_acc - 0.02);
    const double to_90 = StepsTo(curve, 0.90);
    summary["catchup_parents"] = catchup_parents;
    summary["catchup_parents_reached"] = std::isfinite(catchup_parents) ? 1 : 0;
    summary["catchup_union"] = catchup_union;
    summary["catchup_union_reached"] = std::isfinite(catchup_union) ? 1 : 0;
    summary["steps_to_90"] = to_90;
    summary["steps_to_90_reached"] = std::isfinite(to_90) ? 1 : 0;
    double drop = 0;
    for (size_t e = 1; e < per_epoch.size(); ++e) drop = std::max(drop, per_epoch[e - 1] - per_epoch[e]);
    summary["stability"] = drop;
    summary["finetune/steps"] = static_cast<double>(step);
  }

  MergeScenario config_;
  Options options_;
  std::optional<ZooGrid> grid_;  // zoo.grid, loaded by CheckScenario
};

}  // namespace

TB_REGISTER_PROTOCOL(merge, MergeRun,
                     "make one model for C1 ∪ C2 from parents trained on C1 and on C2 (cnn2464 zoo), then fine-tune it: "
                     "IID/OOD/shifted accuracy, joint and per-task accuracy, catch-up, stability, barriers");

}  // namespace tb
