#include <gtest/gtest.h>

#include "experiments/cli/runner.h"
#include "experiments/losses/loss.h"
#include "experiments/methods/method.h"
#include "experiments/protocols/surgery.h"
#include "store/errors.h"
#include "store/hash.h"
#include "tests/test_util.h"

namespace tb {
namespace {

TEST(RegistryTest, HoldsEveryExpectedName) {
  EXPECT_EQ(Methods().Names(),
            (std::vector<std::string>{"cascade_transplant", "concept_injection", "cross_arch_alignment", "direct_copy",
                                      "distillation", "embedding_transfer", "ensemble", "finetune", "fisher_merge",
                                      "init_control", "joint_retrain", "kan_refine", "label_probe", "linear_stitch",
                                      "mapped_distillation", "merge_continual", "mlp_refine", "permutation_merge",
                                      "preserved_concept_injection", "random_init", "regmean", "sequential_finetune",
                                      "svd_init", "task_arithmetic", "ties_merge", "transformer_merge", "union_retrain",
                                      "vector_space_alignment", "weight_average", "weight_map", "zoo_mean"}));
  EXPECT_EQ(Losses().Names(),
            (std::vector<std::string>{"autoregressive_mse", "bottleneck", "composite", "contractive", "contrastive",
                                      "cross_entropy", "fft_difference", "fisher", "gromov_wasserstein",
                                      "jacobian_frobenius", "jensen_shannon", "kd", "latent_consistency",
                                      "layerwise_normalized_mse", "mape", "mel_difference", "ms_fid", "mse",
                                      "multipersistence", "norm_difference", "persistence", "quantile", "sinkhorn",
                                      "sliced_wasserstein"}));
  // Only the bottleneck distance is a metric without a gradient.
  for (const auto& name : Losses().Names()) EXPECT_EQ(Losses().Find(name).make()->IsMetric(), name == "bottleneck") << name;
  try {
    Methods().Find("surgery");
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()).rfind("method 'surgery': unknown (registered: cascade_transplant, ", 0), 0u);
  }
}

TEST(LossTest, KnownAnswers) {
  auto ce = Losses().Find("cross_entropy").make();
  LossInputs in;
  in.logits = torch::zeros({4, 10});
  in.labels = torch::tensor(std::vector<int64_t>{0, 1, 2, 3});
  EXPECT_NEAR(ce->Compute(in).item<double>(), std::log(10.0), 1e-6);  // uniform over 10 classes
  auto kd = Losses().Find("kd").make();
  kd->options().SetText("alpha", "1");
  in.logits = torch::randn({4, 10});
  in.teacher_logits = in.logits.clone();
  EXPECT_NEAR(kd->Compute(in).item<double>(), 0.0, 1e-6);  // KL of identical distributions
  in.teacher_logits = torch::zeros({4, 10});
  EXPECT_GT(kd->Compute(in).item<double>(), 0.0);
  kd->options().SetText("temperature", "0");
  EXPECT_THROW(kd->Compute(in), BadInput);
}

// The message PrepareRun refuses `r` with ("" if it takes it).
std::string PrepareError(const RunRequest& r) {
  try {
    PrepareRun(r);
  } catch (const BadInput& e) {
    return e.what();
  }
  return "";
}

// A tiny scenario on real MNIST: 40 training images per class, one epoch.
class MethodRunTest : public ::testing::Test {
 protected:
  RunRequest Request(const std::string& method, std::vector<std::pair<std::string, nlohmann::json>> extra = {}) {
    RunRequest r;
    r.method = method;
    r.suite = "test";
    r.settings = {{"dataset", "mnist"}, {"data.train_per_class", 40}, {"train.epochs", 1}, {"arch", "verydeep"},
                  {"threads", 1}};
    r.settings.insert(r.settings.end(), extra.begin(), extra.end());
    return r;
  }
  RunOutcome Execute(const RunRequest& r) {
    PreparedRun p = PrepareRun(r);
    return ExecuteRun(p, ResultPaths{dir_.path()}, ExecuteOptions{});
  }
  testing::TempDir dir_;
};

void ExpectInRange(const RunOutcome& out) {
  for (const char* key : {"transfer_rate", "preservation", "acc_before", "acc_after", "false_transfer", "joint_acc"}) {
    ASSERT_TRUE(out.summary.count(key)) << key;
    const double v = out.summary.at(key);
    EXPECT_TRUE(std::isfinite(v)) << key;
    EXPECT_GE(v, 0.0) << key;
    EXPECT_LE(v, key == std::string("preservation") ? 2.0 : 1.0) << key;
  }
}

std::string ZooDigests(const std::string& dir) {
  std::string all;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/zoo")) {
    if (e.is_regular_file()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) all += Sha256File(f);
  return all;
}

TEST_F(MethodRunTest, DirectCopyChangesOnlyTheTransferRowAndIsDeterministic) {
  RunOutcome first = Execute(Request("direct_copy"));
  ASSERT_EQ(first.status, RunStatus::kFinished) << first.error;
  ExpectInRange(first);
  const std::string zoo_before = ZooDigests(dir_.path());
  RunOutcome second = Execute(Request("direct_copy"));
  ASSERT_EQ(second.status, RunStatus::kFinished);
  EXPECT_EQ(ZooDigests(dir_.path()), zoo_before);  // A and B in the zoo untouched
  EXPECT_EQ(second.summary.at("zoo/a_trained"), 0.0);
  for (const auto& [k, v] : first.summary) {
    if (k.rfind("time/", 0) == 0 || k.rfind("zoo/", 0) == 0) continue;
    EXPECT_EQ(second.summary.at(k), v) << k;
  }
  // The copied row equals B's; for the same architecture, row_change_norm is positive.
  EXPECT_GT(first.summary.at("direct_copy/row_change_norm"), 0.0);
}

// Checked before anything is trained or stored.
TEST_F(MethodRunTest, DirectCopyRefusesDifferentWidths) {
  try {
    PrepareRun(Request("direct_copy", {{"arch_a", "superwide"}}));
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_NE(std::string(e.what()).find("target superwide has 2048 penultimate features and source verydeep has 64"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/runs.db"));
}

TEST_F(MethodRunTest, FinetuneForgetsAndIsDeterministic) {
  RunOutcome a = Execute(Request("finetune", {{"steps", 30}}));
  ASSERT_EQ(a.status, RunStatus::kFinished) << a.error;
  ExpectInRange(a);
  EXPECT_GT(a.summary.at("transfer_rate"), 0.9);  // trained on class 4 alone
  EXPECT_LT(a.summary.at("preservation"), 0.5);   // catastrophic forgetting
  RunOutcome b = Execute(Request("finetune", {{"steps", 30}}));
  EXPECT_EQ(a.summary.at("transfer_rate"), b.summary.at("transfer_rate"));
  EXPECT_EQ(a.summary.at("preservation"), b.summary.at("preservation"));
  EXPECT_EQ(a.summary.at("finetune/final_loss"), b.summary.at("finetune/final_loss"));
}

TEST_F(MethodRunTest, ControlsDestroyTheSourceButKeepItsShape) {
  const std::vector<std::pair<std::string, nlohmann::json>> longer = {{"arch", "wide"}, {"train.epochs", 5}};
  auto with = [&](const std::string& source) {
    auto settings = longer;
    settings.emplace_back("source", source);
    return Execute(Request("direct_copy", settings));
  };
  RunOutcome trained = with("trained");
  RunOutcome shuffled = with("shuffled");
  RunOutcome random = with("random");
  for (const auto* out : {&trained, &shuffled, &random}) ASSERT_EQ(out->status, RunStatus::kFinished) << out->error;
  EXPECT_GT(trained.summary.at("source_transfer_acc"), 0.8);  // B knows class 4
  EXPECT_LT(shuffled.summary.at("source_transfer_acc"), 0.6);
  EXPECT_LT(random.summary.at("source_transfer_acc"), 0.6);
  PreparedRun p1 = PrepareRun(Request("direct_copy"));
  PreparedRun p2 = PrepareRun(Request("direct_copy", {{"source", "shuffled"}}));
  EXPECT_NE(p1.config_hash, p2.config_hash);  // the control is part of the config hash
}

TEST_F(MethodRunTest, BadOptionsAreRejectedBeforeAnythingIsStored) {
  const auto error = PrepareError;
  EXPECT_NE(error(Request("direct_copy", {{"steps", 3}})).find("unknown option 'steps' (accepted: activation, arch_a"),
            std::string::npos);
  EXPECT_EQ(error(Request("direct_copy", {{"transfer", "6"}})), "transfer=6: class 6 is not in classes_b (2,3,4,5)");
  EXPECT_EQ(error(Request("direct_copy", {{"transfer", "2"}})), "transfer=2: class 2 is already in classes_a (0,1,2,3)");
  EXPECT_EQ(error(Request("direct_copy", {{"classes_a", "0,11"}})), "classes_a=0,11: class 11 out of range 0..9");
  EXPECT_EQ(error(Request("direct_copy", {{"source", "noise"}})), "source=noise: expected one of trained, random, shuffled");
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/runs.db"));
}

// Review 19.3: every transfer sample was pushed toward the first listed class (transfer=4,5 left
// acc_class_5 at 0, and 5,4 gave another answer). Methods declare whether they take several.
TEST_F(MethodRunTest, SeveralTransferClassesEachTowardItsOwnAndInAnyOrder) {
  // wide: verydeep after one epoch on 40 images per class has too little in its features.
  const std::vector<std::pair<std::string, nlohmann::json>> forward = {{"arch", "wide"}, {"transfer", "4,5"}};
  const std::vector<std::pair<std::string, nlohmann::json>> backward = {{"arch", "wide"}, {"transfer", "5,4"}};
  PreparedRun p45 = PrepareRun(Request("label_probe", forward));
  PreparedRun p54 = PrepareRun(Request("label_probe", backward));
  EXPECT_EQ(p45.config_hash, p54.config_hash);
  EXPECT_EQ(p54.config_json.at("transfer"), nlohmann::json::parse("[4, 5]"));
  RunOutcome a = Execute(Request("label_probe", forward));
  ASSERT_EQ(a.status, RunStatus::kFinished) << a.error;
  EXPECT_GT(a.summary.at("acc_class_4"), 0.3);
  EXPECT_GT(a.summary.at("acc_class_5"), 0.3);
  RunOutcome b = Execute(Request("label_probe", backward));
  for (const char* key : {"transfer_rate", "acc_class_4", "acc_class_5", "preservation", "label_probe/final_loss"}) {
    EXPECT_EQ(a.summary.at(key), b.summary.at(key)) << key;
  }
  for (const auto& name : Methods().Names()) {
    auto method = Methods().Find(name).make();
    if (method->protocol() != "surgery") continue;
    const auto* surgery = dynamic_cast<const SurgeryMethod*>(method.get());
    ASSERT_NE(surgery, nullptr) << name;
    const bool several = surgery->SeveralTransferClasses();
    const std::string error = PrepareError(Request(name, forward));
    if (several) {
      EXPECT_EQ(error, "") << name;
    } else {
      EXPECT_EQ(error, "transfer=4,5: " + name + " moves one transfer class at a time (expected a single class; run one "
                       "run per class)") << name;
    }
  }
  for (const char* several : {"direct_copy", "finetune", "label_probe", "linear_stitch"}) {
    auto method = Methods().Find(several).make();
    EXPECT_TRUE(dynamic_cast<const SurgeryMethod&>(*method).SeveralTransferClasses()) << several;
  }
}

// Review 19.4 and 19.8: non-finite numbers hashed alike and reached the calibration's floor();
// calibrate=control without validation data failed only after training A and B.
TEST_F(MethodRunTest, NonFiniteAndCalibrationWithoutValidationAreRefusedUpFront) {
  const auto error = PrepareError;
  for (const char* v : {"nan", "inf", "-inf"}) {
    EXPECT_EQ(error(Request("direct_copy", {{"calibrate.threshold", v}})),
              std::string("calibrate.threshold=") + v + ": expected a finite number");
    EXPECT_EQ(error(Request("finetune", {{"train.lr", v}})), std::string("train.lr=") + v + ": expected a finite number");
  }
  EXPECT_EQ(error(Request("direct_copy", {{"calibrate.threshold", "1.5"}})),
            "calibrate.threshold=1.5: expected a share of preservation in [0, 1]");
  EXPECT_EQ(error(Request("direct_copy", {{"calibrate", "control"}, {"train.val_fraction", 0}})).rfind(
                "calibrate=control with train.val_fraction=0:", 0),
            0u);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/runs.db"));
}

// Review 19.5: the zoo key left out the thread count, which changes the trained weights.
TEST_F(MethodRunTest, ZooModelsTrainedAtAnotherThreadCountAreNotShared) {
  RunOutcome one = Execute(Request("direct_copy"));
  ASSERT_EQ(one.status, RunStatus::kFinished) << one.error;
  EXPECT_EQ(one.summary.at("zoo/a_trained"), 1.0);
  RunOutcome two = Execute(Request("direct_copy", {{"threads", 2}}));
  ASSERT_EQ(two.status, RunStatus::kFinished) << two.error;
  EXPECT_EQ(two.summary.at("zoo/a_trained"), 1.0);  // its own A, trained with 2 threads
  RunOutcome again = Execute(Request("direct_copy", {{"seed", 0}}));
  EXPECT_EQ(again.summary.at("zoo/a_trained"), 0.0);
}

// Review 19.13: a config another process finished while the suite ran was skipped untagged,
// so it was missing from the suite's report.
TEST_F(MethodRunTest, ASkippedRunIsTaggedWithTheSuiteThatSkippedIt) {
  RunRequest lone = Request("direct_copy");
  lone.suite = "";
  RunOutcome made = Execute(lone);
  ASSERT_EQ(made.status, RunStatus::kFinished) << made.error;
  RunRequest in_suite = Request("direct_copy");
  in_suite.suite = "later";
  PreparedRun p = PrepareRun(in_suite);
  ExecuteOptions skip;
  skip.skip_finished = true;
  RunOutcome skipped = ExecuteRun(p, ResultPaths{dir_.path()}, skip);
  ASSERT_TRUE(skipped.skipped);
  EXPECT_EQ(skipped.run_id, made.run_id);
  RunStore store(dir_.path() + "/runs.db");
  RunFilter f;
  f.suite = "later";
  const auto members = store.ListRuns(f);
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members.front().id, made.run_id);
}

}  // namespace
}  // namespace tb
