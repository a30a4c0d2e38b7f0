// The logging interface's histograms: W&B's histogram object, binned as numpy.histogram bins
// (the answers below are numpy 1.24's), stored as one metric row that carries it.
#include <cmath>

#include <gtest/gtest.h>

#include "store/errors.h"
#include "store/logger.h"
#include "tests/test_util.h"

namespace tb {
namespace {

std::vector<int64_t> Counts(const nlohmann::json& h) { return h.at("values").get<std::vector<int64_t>>(); }
std::vector<double> Edges(const nlohmann::json& h) { return h.at("bins").get<std::vector<double>>(); }

TEST(HistogramJsonTest, BinsAsNumpyDoes) {
  // np.histogram(range(11), 4) → [3 2 3 3], edges [0 2.5 5 7.5 10]: the last bin closed.
  std::vector<double> v;
  for (int i = 0; i <= 10; ++i) v.push_back(i);
  nlohmann::json h = HistogramJson(v, 4);
  EXPECT_EQ(h.at("_type"), "histogram");
  EXPECT_EQ(Counts(h), (std::vector<int64_t>{3, 2, 3, 3}));
  EXPECT_EQ(Edges(h), (std::vector<double>{0, 2.5, 5, 7.5, 10}));
  // np.histogram([0.1, 0.2, 0.3], 2) → [1 2]: 0.2 lies on the computed edge and goes right.
  EXPECT_EQ(Counts(HistogramJson({0.1, 0.2, 0.3}, 2)), (std::vector<int64_t>{1, 2}));
  // np.histogram([0, 1/3, 2/3, 1], 3) → [1 1 2]: 2/3 is just below the float edge 0.666…7.
  EXPECT_EQ(Counts(HistogramJson({0.0, 1.0 / 3, 2.0 / 3, 1.0}, 3)), (std::vector<int64_t>{1, 1, 2}));
  // All equal: numpy's range value ± 0.5.
  h = HistogramJson({5, 5, 5}, 3);
  EXPECT_EQ(Counts(h), (std::vector<int64_t>{0, 3, 0}));
  EXPECT_DOUBLE_EQ(Edges(h).front(), 4.5);
  EXPECT_DOUBLE_EQ(Edges(h).back(), 5.5);
  // Non-finite values are left out; W&B's default is 64 bins.
  h = HistogramJson({1.0, NAN, INFINITY, 2.0});
  EXPECT_EQ(Counts(h).size(), 64u);
  EXPECT_EQ(Counts(h).front() + Counts(h).back(), 2);
  EXPECT_THROW(HistogramJson({1.0}, 0), BadInput);
  EXPECT_THROW(HistogramJson({1.0}, 513), BadInput);
}

TEST(HistogramJsonTest, SqliteLoggerStoresOneRowCarryingIt) {
  testing::TempDir dir;
  const std::string db = dir / "runs.db";
  std::string id;
  {
    RunStore store(db);
    NewRun r;
    r.method = "finetune";
    r.config = {{"method", "finetune"}};
    id = store.CreateRun(r);
  }
  {
    SqliteLogger log(db, id);
    log.Scalar("loss", 0.5, 1);
    log.Histogram("weights", {0, 1, 2, 3, NAN}, 1);
    log.RunEnded(RunStatus::kFinished, 0, "");
  }
  RunStore store(db);
  const auto rows = store.Metrics(id);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[0].data.empty());
  EXPECT_EQ(rows[1].key, "weights");
  EXPECT_EQ(rows[1].value, 4);  // the finite samples
  const auto h = nlohmann::json::parse(rows[1].data);
  EXPECT_EQ(h, HistogramJson({0, 1, 2, 3}));
}

}  // namespace
}  // namespace tb
