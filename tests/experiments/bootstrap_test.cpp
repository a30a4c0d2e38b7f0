// The bootstrap protocol end to end, on real MNIST: tiny models, a few steps.
#include <gtest/gtest.h>

#include <fstream>

#include <cmath>

#include "experiments/cli/runner.h"
#include "experiments/data/dataset.h"
#include "experiments/protocols/bootstrap.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

class BootstrapRunTest : public ::testing::Test {
 protected:
  RunRequest Request(const std::string& method, std::vector<std::pair<std::string, nlohmann::json>> extra = {}) {
    RunRequest r;
    r.method = method;
    r.suite = "test";
    r.settings = {{"dataset", "mnist"},        {"data.train_per_class", 30}, {"eval.test_per_class", 10},
                  {"source.train.epochs", 4},  {"source.train.lr", 0.01},  {"train.steps", 20},          {"train.eval_every", 5},
                  {"arch_b", "lstm16"},        {"arch_a", "cfc16"},           {"threads", 1}};
    r.settings.insert(r.settings.end(), extra.begin(), extra.end());
    return r;
  }
  RunOutcome Execute(const RunRequest& r, const std::string& dir) {
    PreparedRun p = PrepareRun(r);
    return ExecuteRun(p, ResultPaths{dir}, ExecuteOptions{});
  }
  std::string PrepareError(const RunRequest& r) {
    try {
      PrepareRun(r);
    } catch (const BadInput& e) {
      return e.what();
    }
    return "";
  }
  testing::TempDir dir_;
};

TEST_F(BootstrapRunTest, EveryMethodRunsIsDeterministicAndLogsTheCurveMetrics) {
  testing::TempDir other;
  for (const std::string method :
       {"random_init", "weight_map", "svd_init", "embedding_transfer", "distillation", "mapped_distillation"}) {
    auto r = Request(method, {{"arch_a", "cfc24"}});
    RunOutcome a = Execute(r, dir_.path());
    ASSERT_EQ(a.status, RunStatus::kFinished) << method << ": " << a.error;
    RunOutcome b = Execute(r, other.path());
    ASSERT_EQ(b.status, RunStatus::kFinished) << method << ": " << b.error;
    for (const char* key : {"step0", "final", "aulc", "dead_capacity", "target_reached", "source_acc", "random_init/aulc",
                            "random_init/final", "aulc_gain"}) {
      ASSERT_TRUE(a.summary.count(key)) << method << " " << key;
      EXPECT_EQ(a.summary.at(key), b.summary.at(key)) << method << " " << key;
      EXPECT_TRUE(std::isfinite(a.summary.at(key))) << method << " " << key;
    }
    EXPECT_GE(a.summary.at("step0"), 0.0);
    EXPECT_LE(a.summary.at("final"), 1.0);
    EXPECT_GT(a.summary.at("source_acc"), 0.2) << method;  // the source learned something (chance: 0.1)
  }
}

// The character-level task on a corpus the test writes: every method runs on it, bits per
// character are in range, and lstm32 → lstm48 with pad=zero starts at the source's own value.
TEST_F(BootstrapRunTest, TheTextTaskRunsEveryMethodInBitsPerCharacter) {
  testing::TempDir text;
  {
    std::ofstream out(text / "corpus.txt");
    const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
    for (int p = 0; p < 120; ++p) {
      for (int w = 0; w < 12; ++w) out << words[(p * 7 + w * 3) % 10] << (w == 11 ? ".\n" : " ");
      out << "\n";
    }
  }
  const std::vector<std::pair<std::string, nlohmann::json>> task = {
      {"dataset", "text"}, {"data.dir", text.path()}, {"source.lm.steps", 60}, {"text.seq_len", 16},
      {"eval.chars", 2000}, {"train.batch_size", 16}, {"source.lm.batch_size", 16}, {"arch_b", "lstm32"}, {"arch_a", "lstm48"}};
  const double uniform_bits = std::log2(17.0);  // 16 letters and the space, '.' and newline: at most this many symbols
  for (const std::string method : {"random_init", "weight_map", "svd_init", "embedding_transfer", "distillation"}) {
    RunOutcome a = Execute(Request(method, task), dir_.path());
    ASSERT_EQ(a.status, RunStatus::kFinished) << method << ": " << a.error;
    for (const char* key : {"step0_bpc", "final_bpc", "aulc_bpc", "source_bpc", "random_init/final_bpc", "aulc_gain"}) {
      ASSERT_TRUE(a.summary.count(key)) << method << " " << key;
      EXPECT_TRUE(std::isfinite(a.summary.at(key))) << method << " " << key;
    }
    EXPECT_FALSE(a.summary.count("step0")) << method;
    EXPECT_LT(a.summary.at("source_bpc"), uniform_bits) << method;  // the source learned something
    EXPECT_LT(a.summary.at("final_bpc"), a.summary.at("step0_bpc") + 1e-9) << method;
    if (method == "weight_map") {
      EXPECT_NEAR(a.summary.at("step0_bpc"), a.summary.at("source_bpc"), 1e-5);
      EXPECT_EQ(a.summary.at("steps_to_target"), 0.0);
      EXPECT_GT(a.summary.at("dead_capacity"), 0.0);  // the zero padding
    }
  }
}

TEST(BootstrapMetricsTest, SpeedupPairsTheStepsAndMarksBounds) {
  EXPECT_FALSE(Speedup(-1, 50, 150, 15).has_value());                       // the method never gets there
  EXPECT_EQ(Speedup(30, 90, 150, 15), std::make_optional(std::make_pair(3.0, false)));
  EXPECT_EQ(Speedup(30, -1, 150, 15), std::make_optional(std::make_pair(5.0, true)));    // budget / steps
  EXPECT_EQ(Speedup(0, 90, 150, 15), std::make_optional(std::make_pair(6.0, true)));     // one interval
  EXPECT_EQ(Speedup(0, 0, 150, 15), std::make_optional(std::make_pair(1.0, false)));
  EXPECT_EQ(Speedup(15, 0, 150, 15), std::make_optional(std::make_pair(0.0, false)));
  LearningCurve bpc;
  bpc.steps = {0, 10, 20};
  bpc.acc = {4.0, 2.5, 2.0};
  EXPECT_EQ(StepsToTarget(bpc, 2.5, /*lower_is_better=*/true), 10);
  EXPECT_EQ(StepsToTarget(bpc, 1.0, /*lower_is_better=*/true), -1);
}

TEST_F(BootstrapRunTest, RandomInitIsItsOwnReferenceAndTheCacheGivesTheSameCurve) {
  RunOutcome ref = Execute(Request("random_init"), dir_.path());
  ASSERT_EQ(ref.status, RunStatus::kFinished) << ref.error;
  EXPECT_EQ(ref.summary.at("aulc"), ref.summary.at("random_init/aulc"));
  EXPECT_EQ(ref.summary.at("aulc_gain"), 0.0);
  if (ref.summary.count("speedup")) EXPECT_EQ(ref.summary.at("speedup"), 1.0);
  // Another method on the same seed and target reads the cached reference: the same numbers.
  RunOutcome wm = Execute(Request("weight_map"), dir_.path());
  ASSERT_EQ(wm.status, RunStatus::kFinished) << wm.error;
  EXPECT_EQ(wm.summary.at("random_init/aulc"), ref.summary.at("aulc"));
  EXPECT_EQ(wm.summary.at("random_init/step0"), ref.summary.at("step0"));
  // A fresh directory trains it again and gets the same.
  testing::TempDir fresh;
  RunOutcome wm2 = Execute(Request("weight_map"), fresh.path());
  EXPECT_EQ(wm2.summary.at("random_init/aulc"), ref.summary.at("aulc"));
  EXPECT_EQ(wm2.summary.at("aulc"), wm.summary.at("aulc"));
}

TEST_F(BootstrapRunTest, ZeroPadLeavesTheWiderTargetsPaddingDeadAndRandomPadDoesNot) {
  // lstm16 → lstm24 over the identity table: the padded share of lstm24's parameters.
  // lstm24: embed 28·24+24, gates 4·(24·24·2+24), head 24·10+10; the copied block is lstm16's size.
  const double total = 28 * 24 + 24 + 4 * (24 * 24 * 2 + 24) + 24 * 10 + 10;
  const double copied = 28 * 16 + 16 + 4 * (16 * 16 * 2 + 16) + 16 * 10 + 10;
  // Real entries no gradient reaches either: the embedding's column of a pixel column that is 0
  // in every training image (MNIST's borders), one entry per unit.
  const Dataset& ds = LoadDataset(DataSpec{"mnist", ""});
  const auto fit = ZooTrainingData(ds, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 30, 0.1, 0).first;
  const int64_t blank = fit.images.abs().amax({0, 1, 2}).eq(0).sum().item<int64_t>();  // of the 28 pixel columns
  RunOutcome zero = Execute(Request("weight_map", {{"arch_a", "lstm24"}, {"pad", "zero"}}), dir_.path());
  ASSERT_EQ(zero.status, RunStatus::kFinished) << zero.error;
  EXPECT_DOUBLE_EQ(zero.summary.at("dead_capacity"), (total - copied + 16.0 * static_cast<double>(blank)) / total);
  // At step 0 the padded target computes the source's function: its accuracy.
  EXPECT_DOUBLE_EQ(zero.summary.at("step0"), zero.summary.at("source_acc"));
  RunOutcome random = Execute(Request("weight_map", {{"arch_a", "lstm24"}, {"pad", "random"}}), dir_.path());
  ASSERT_EQ(random.status, RunStatus::kFinished) << random.error;
  EXPECT_DOUBLE_EQ(random.summary.at("dead_capacity"), 24.0 * static_cast<double>(blank) / total);
}

TEST_F(BootstrapRunTest, ControlsAndBadInput) {
  RunOutcome shuffled = Execute(Request("weight_map", {{"source", "shuffled"}}), dir_.path());
  ASSERT_EQ(shuffled.status, RunStatus::kFinished) << shuffled.error;
  RunOutcome refused = Execute(Request("random_init", {{"source", "shuffled"}}), dir_.path());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.error.find("random_init does not use the source"), std::string::npos) << refused.error;
  EXPECT_NE(PrepareError(Request("weight_map", {{"table", "candidate.W=nosuch.W"}})).find("the target cfc16 has no parameter 'nosuch.W'"),
            std::string::npos);
  EXPECT_NE(PrepareError(Request("weight_map", {{"arch_a", "ssm"}})).find("no declared mapping from lstm to ssm"),
            std::string::npos);
  EXPECT_NE(PrepareError(Request("weight_map", {{"arch_a", "wide"}})).find("arch_a=wide: an image model, not a sequence model"),
            std::string::npos);
  EXPECT_NE(PrepareError(Request("weight_map", {{"arch_a", "lstm0"}})).find("arch_a=lstm0: architecture 'lstm0': width 0"),
            std::string::npos);
  // A text corpus that is not UTF-8, or empty, is bad input naming the file.
  testing::TempDir text;
  { std::ofstream(text / "a.txt") << "caf\xe9 latin-1\n\n"; }
  EXPECT_NE(PrepareError(Request("weight_map", {{"dataset", "text"}, {"data.dir", text.path()}}))
                .find(text / "a.txt" + ": not UTF-8 (byte 0x20 at offset 4"),
            std::string::npos);
  { std::ofstream(text / "a.txt", std::ios::trunc); }
  EXPECT_NE(PrepareError(Request("weight_map", {{"dataset", "text"}, {"data.dir", text.path()}})).find(text / "a.txt" + ": empty file"),
            std::string::npos);
  EXPECT_NE(PrepareError(Request("svd_init", {{"rank", 0}})).find("rank=0"), std::string::npos);
  EXPECT_NE(PrepareError(Request("weight_map", {{"pad", "ones"}})).find("pad"), std::string::npos);
  EXPECT_NE(PrepareError(Request("random_init", {{"train.steps", 0}})).find("train.steps=0"), std::string::npos);
}

// The continual protocol started from a bootstrapped task-0 model (the document's last stage):
// the accuracy matrix of a cfc started by weight_map from an lstm, and its bad input.
TEST_F(BootstrapRunTest, ContinualStartsFromABootstrappedModel) {
  RunRequest r;
  r.method = "sequential_finetune";
  r.suite = "test";
  r.settings = {{"dataset", "mnist"}, {"data.train_per_class", 30}, {"train.epochs", 1},   {"tasks", "01,23"},
                {"arch", "cfc16"},    {"start", "weight_map"},      {"start.arch_b", "lstm16"}, {"start.steps", 10},
                {"threads", 1}};
  RunOutcome a = Execute(r, dir_.path());
  ASSERT_EQ(a.status, RunStatus::kFinished) << a.error;
  for (const char* key : {"avg_acc", "forgetting_max", "bwt", "fwt", "acc_matrix/0/0", "acc_matrix/1/1", "acc_init/0"}) {
    ASSERT_TRUE(a.summary.count(key)) << key;
    EXPECT_TRUE(std::isfinite(a.summary.at(key))) << key;
  }
  // Deterministic, and different from the random-init start.
  testing::TempDir other;
  EXPECT_EQ(Execute(r, other.path()).summary.at("acc_matrix/0/0"), a.summary.at("acc_matrix/0/0"));
  r.settings.push_back({"start", "random_init"});
  RunOutcome b = Execute(r, dir_.path());
  ASSERT_EQ(b.status, RunStatus::kFinished) << b.error;
  r.settings.push_back({"start", "direct_copy"});
  EXPECT_NE(PrepareError(r).find("start=direct_copy: expected zoo or a method of the bootstrap protocol"), std::string::npos)
      << PrepareError(r);
}

}  // namespace
}  // namespace tb
