#include "experiments/protocols/continual.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/metrics/continual.h"
#include "experiments/protocols/bootstrap.h"
#include "experiments/protocols/protocol.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"

namespace tb {
namespace {

struct ContinualScenario {
  std::string dataset = "mnist";
  std::string data_dir;
  int64_t train_per_class = 0;
  std::string tasks = "01,23,45,67,89";
  std::string arch = "cnn2464";
  std::string activation = "relu";
  std::string init = "kaiming_uniform";
  TrainOptions train;
  // Task 0's model: from the zoo, or bootstrapped (the weight-transfer document's last stage).
  std::string start = "zoo";
  std::string start_arch_b = "xlstm";
  std::string start_source = "trained";
  int64_t start_steps = 300;

  ContinualScenario() {
    train.epochs = 11;
    train.early_stopping = true;
  }

  void Bind(Options& o) {
    o.Add("dataset", &dataset, "dataset name", DatasetNames());
    o.Add("data.dir", &data_dir, "directory of IDX files (overrides the dataset's default location)");
    o.Add("data.train_per_class", &train_per_class, "use at most this many training images per class (0: all)");
    o.Add("tasks", &tasks, "the task sequence: comma-separated tasks, each its class digits (01,23,45,67,89: split MNIST)");
    o.Add("arch", &arch, "architecture of every model");
    o.Add("activation", &activation, "hidden activation", ActivationNames());
    o.Add("init", &init, "weight initialisation", InitNames());
    train.Bind(o, "train.");
    o.Add("start", &start,
          "task 0's model: zoo (trained on it, from the initial checkpoint) or a bootstrap method (weight_map, "
          "random_init, ...) that starts arch from a start.arch_b source trained on task 0");
    o.Add("start.arch_b", &start_arch_b, "with a bootstrap start: the source architecture");
    o.Add("start.source", &start_source, "with a bootstrap start: its source control", {"trained", "random", "shuffled"});
    o.Add("start.steps", &start_steps, "with a bootstrap start: the target's step budget on task 0");
  }

  // The tasks as class lists; BadInput for anything but disjoint digit groups.
  std::vector<std::vector<int64_t>> Tasks() const {
    std::vector<std::vector<int64_t>> out;
    std::set<int64_t> seen;
    size_t start = 0;
    while (start <= tasks.size()) {
      const size_t comma = std::min(tasks.find(',', start), tasks.size());
      const std::string group = tasks.substr(start, comma - start);
      if (group.empty()) throw BadInput(fmt::format("tasks={}: an empty task (expected e.g. 01,23,45)", tasks));
      std::vector<int64_t> classes;
      for (char ch : group) {
        if (ch < '0' || ch > '9') throw BadInput(fmt::format("tasks={}: '{}' is not a class digit (expected e.g. 01,23,45)", tasks, ch));
        if (!seen.insert(ch - '0').second) {
          throw BadInput(fmt::format("tasks={}: class {} appears in two tasks (expected disjoint tasks)", tasks, ch - '0'));
        }
        classes.push_back(ch - '0');
      }
      std::sort(classes.begin(), classes.end());
      out.push_back(classes);
      start = comma + 1;
    }
    if (out.size() < 2) throw BadInput(fmt::format("tasks={}: expected at least two tasks", tasks));
    return out;
  }
};

std::vector<int64_t> Joined(const std::vector<std::vector<int64_t>>& tasks, size_t first, size_t last) {
  std::vector<int64_t> all;
  for (size_t t = first; t <= last; ++t) all.insert(all.end(), tasks[t].begin(), tasks[t].end());
  std::sort(all.begin(), all.end());
  return all;
}

ContinualMethod& AsContinual(Method& method) {
  auto* m = dynamic_cast<ContinualMethod*>(&method);
  if (!m) throw std::logic_error("continual protocol given a method that is not a ContinualMethod");
  return *m;
}

class ContinualRun : public ProtocolRun {
 public:
  ContinualRun() { config_.Bind(options_); }
  ContinualRun(const ContinualRun&) = delete;
  ContinualRun& operator=(const ContinualRun&) = delete;
  Options& options() override { return options_; }

  void CheckScenario() override {
    config_.Tasks();
    CheckArchitecture("arch", config_.arch);
    if (config_.train_per_class < 0) throw BadInput(fmt::format("data.train_per_class={}: expected >= 0", config_.train_per_class));
    CheckTrainOptions(config_.train, "train.");
    if (config_.start != "zoo") {
      const auto m = Methods().Find(config_.start).make();  // BadInput listing the methods
      if (m->protocol() != "bootstrap") {
        throw BadInput(fmt::format("start={}: expected zoo or a method of the bootstrap protocol (it runs under {})",
                                   config_.start, m->protocol()));
      }
      // The bootstrap protocol starts `arch` from a trained start.arch_b: both sequence models.
      CheckArchitecture("arch", config_.arch, ArchKind::kSequence);
      CheckArchitecture("start.arch_b", config_.start_arch_b, ArchKind::kSequence);
      if (config_.start_steps < 1) throw BadInput(fmt::format("start.steps={}: expected at least 1", config_.start_steps));
    }
  }
  void CheckMethod(Method& method, const std::string& method_name) override { AsContinual(method).Check(); }
  nlohmann::json Identity() override {
    return {{"dataset_sha256", LoadDataset(DataSpec{config_.dataset, config_.data_dir}).sha256}};
  }
  std::string ScenarioName() const override { return "tasks-" + config_.tasks; }
  std::string Dataset() const override { return config_.dataset; }
  std::string Label() const override { return fmt::format("{} {} tasks {}", config_.dataset, config_.arch, config_.tasks); }

  MetricMap Execute(Method& method, ProtocolContext& ctx) override {
    ContinualMethod& m = AsContinual(method);
    if (ctx.source != "trained" && !m.UsesTaskModels()) {
      throw BadInput(fmt::format("source={}: {} does not use the task models the control replaces (expected source=trained)",
                                 ctx.source, ctx.method));
    }
    const ContinualScenario& c = config_;
    const auto tasks = c.Tasks();
    const size_t k_tasks = tasks.size();
    const ::tb::Dataset& ds = LoadDataset(DataSpec{c.dataset, c.data_dir});
    Zoo zoo(ctx.paths.zoo_dir(), ctx.store);
    const int64_t init_seed = ctx.seed;
    auto zoo_model = [&](const std::vector<int64_t>& classes, uint64_t seed, const std::string& prefix) {
      ZooEntry e = zoo.Get(ProtocolZooRequest(ds, ModelSpec{c.arch, c.activation, c.init, ds.num_classes}, classes, seed,
                                              init_seed, c.train, c.train_per_class, ctx),
                           &ctx.log, prefix);
      ctx.log.Text(fmt::format("{} {} on {}: {} ({})", prefix.substr(4, prefix.size() - 5), c.arch, fmt::join(classes, ","),
                               e.trained ? "trained" : "from the zoo", e.hash.substr(0, 12)));
      return e.model;
    };
    // Task t's data, and its model from the shared initial checkpoint (batch order seed + t).
    std::vector<Split> fit(k_tasks), val(k_tasks), test(k_tasks);
    for (size_t t = 0; t < k_tasks; ++t) {
      std::tie(fit[t], val[t]) = ZooTrainingData(ds, tasks[t], c.train_per_class, c.train.val_fraction,
                                                 static_cast<uint64_t>(ctx.seed) + t);
      test[t] = SelectClasses(ds.test, tasks[t]);
    }
    torch::manual_seed(static_cast<uint64_t>(init_seed));
    ModelPtr init = MakeModel(ModelSpec{c.arch, c.activation, c.init, ds.num_classes});
    init->to(ctx.device);
    init->eval();

    AccuracyMatrix r, r_task;
    std::vector<double> b, b_task;
    auto evaluate = [&](Classifier& model, std::vector<double>& row, std::vector<double>& row_task) {
      for (size_t j = 0; j < k_tasks; ++j) {
        const torch::Tensor logits = Logits(model, test[j].images, kMergeEvalBatch);
        row.push_back(ClassAccuracy(logits, test[j].labels, tasks[j]));
        row_task.push_back(ClassAccuracy(logits, test[j].labels, tasks[j], tasks[j]));
      }
    };
    evaluate(*init, b, b_task);
    ModelPtr current;
    if (c.start == "zoo") {
      current = CloneModel(zoo_model(tasks[0], static_cast<uint64_t>(ctx.seed), "zoo/task0/"));
    } else {
      // Bootstrapped on task 0 by the bootstrap protocol itself (its source from the zoo).
      current = BootstrappedModel(c.start,
                                  {{"dataset", c.dataset},
                                   {"data.dir", c.data_dir},
                                   {"data.train_per_class", c.train_per_class},
                                   {"classes", tasks[0]},
                                   {"arch_a", c.arch},
                                   {"arch_b", c.start_arch_b},
                                   {"source.train.epochs", c.train.epochs},
                                   {"train.steps", c.start_steps}},
                                  c.start_source, ctx);
      ctx.log.Text(fmt::format("task 0: {} bootstrapped by {} from {} (source {})", c.arch, c.start, c.start_arch_b,
                               c.start_source));
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t k = 0; k < k_tasks; ++k) {
      if (k > 0) {
        MergeData data;
        data.dataset = &ds;
        data.classes_1 = Joined(tasks, 0, k - 1);
        data.classes_2 = tasks[k];
        data.classes = Joined(tasks, 0, k);
        std::vector<Split> old_fit(fit.begin(), fit.begin() + k), old_val(val.begin(), val.begin() + k);
        data.train_1 = ConcatSplits(old_fit);
        data.val_1 = ConcatSplits(old_val);
        data.train_2 = fit[k];
        data.val_2 = val[k];
        data.train = ConcatSplits({data.train_1, data.train_2});
        data.val = ConcatSplits({data.val_1, data.val_2});
        std::vector<Split> seen_test(test.begin(), test.begin() + k + 1);
        data.test = ConcatSplits(seen_test);
        ModelPtr task_model = SourceControl(zoo_model(tasks[k], static_cast<uint64_t>(ctx.seed) + k, fmt::format("zoo/task{}/", k)),
                                            ctx.source, static_cast<uint64_t>(ctx.seed) + 1000 + k, ctx.device);
        ContinualStep step{static_cast<int64_t>(k), CloneModel(current), task_model, CloneModel(init), data,
                           [&](const std::vector<int64_t>& classes) {
                             return CloneModel(zoo_model(classes, static_cast<uint64_t>(ctx.seed) + 100, "zoo/joint/"));
                           },
                           c.train, ctx.device, ctx.log, static_cast<uint64_t>(ctx.seed) + k};
        torch::manual_seed(static_cast<uint64_t>(ctx.seed) + k);
        current = m.Step(step);
        current->eval();
      }
      r.emplace_back();
      r_task.emplace_back();
      evaluate(*current, r.back(), r_task.back());
      for (size_t j = 0; j < k_tasks; ++j) ctx.log.Scalar(fmt::format("acc/task{}", j), r.back()[j], static_cast<int64_t>(k));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    MetricMap summary;
    auto add = [&](const std::string& suffix, const AccuracyMatrix& matrix, const std::vector<double>& base) {
      double sum = 0;
      for (double v : matrix.back()) sum += v;
      summary["avg_acc" + suffix] = sum / static_cast<double>(k_tasks);
      summary["forgetting_max" + suffix] = ForgettingMax(matrix);
      summary["forgetting_first" + suffix] = ForgettingFirst(matrix);
      summary["bwt" + suffix] = BackwardTransfer(matrix);
      summary["fwt" + suffix] = ForwardTransfer(matrix, base);
      for (size_t i = 0; i < k_tasks; ++i) {
        summary[fmt::format("acc_init{}/{}", suffix, i)] = base[i];
        for (size_t j = 0; j < k_tasks; ++j) summary[fmt::format("acc_matrix{}/{}/{}", suffix, i, j)] = matrix[i][j];
      }
    };
    add("", r, b);
    add("_task", r_task, b_task);
    summary["time/method_seconds"] = seconds;
    return summary;
  }

 private:
  ContinualScenario config_;
  Options options_;
};

}  // namespace

TB_REGISTER_PROTOCOL(continual, ContinualRun,
                     "fold a class-incremental task sequence into one model, step by step (fine-tuning, a merge method, "
                     "or joint retraining): accuracy matrix, average accuracy, forgetting, BWT, FWT");

}  // namespace tb
