#include <fstream>

#include <gtest/gtest.h>

#include "experiments/models/model.h"
#include "experiments/train/zoo.h"
#include "experiments/train/zoo_grid.h"
#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

std::string WriteGrid(const testing::TempDir& dir, const std::string& body) {
  const std::string path = dir / "grid.json";
  std::ofstream(path) << body;
  return path;
}

std::string LoadError(const std::string& path) {
  try {
    LoadZooGrid(path);
  } catch (const BadInput& e) {
    return e.what();
  }
  return "";
}

TEST(ZooGridTest, TheReportGridHasItsSizeAndBadGridsAreRefused) {
  const ZooGrid report = LoadZooGrid("report");
  EXPECT_EQ(report.subsets.size(), 1013u);  // every subset of 2 to 10 of the 10 classes
  EXPECT_EQ(report.Units(), 6078);
  EXPECT_EQ(report.Units() * static_cast<int64_t>(report.checkpoints.size()), 36468);
  EXPECT_EQ(report.subsets.front(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(report.subsets.back(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(LoadZooGrid("report_relu").Units(), 1013);
  testing::TempDir dir;
  const std::string base = R"("name": "t", "subsets": [[0, 1]], "inits": ["kaiming_uniform"])";
  EXPECT_NE(LoadError(WriteGrid(dir, "{" + base + R"(, "activations": ["swish"]})")).find("activation 'swish': unknown"),
            std::string::npos);
  EXPECT_NE(LoadError(WriteGrid(dir, "{" + base + R"(, "activations": ["relu"], "checkpoints": [5, 3]})"))
                .find("checkpoints=5,3: expected increasing"),
            std::string::npos);
  EXPECT_NE(LoadError(WriteGrid(dir, "{" + base + R"(, "activations": ["relu"], "epochs": 3})")).find("unknown key \"epochs\""),
            std::string::npos);
  EXPECT_NE(LoadError(WriteGrid(dir, R"({"name": "t", "subsets": [[0, 0]], "inits": ["normal"], "activations": ["relu"]})"))
                .find("subset [0,0]: expected distinct classes"),
            std::string::npos);
  EXPECT_NE(LoadError("no_such_grid").find("zoo grid 'no_such_grid': no such file"), std::string::npos);
  EXPECT_NE(LoadError(WriteGrid(dir, "{" + base + R"(, "activations": ["relu"], "seeds": [0, 0]})")).find("seeds=0,0: expected distinct"),
            std::string::npos);
}

TEST(ZooGridTest, BuildsResumablyFilesCheckpointsAndExportRoundTrips) {
  testing::TempDir dir;
  const ZooGrid grid = LoadZooGrid("quick");
  RunStore store(dir / "runs.db");
  EXPECT_THROW(ExportZoo(store, grid, "csv", dir / "x.csv"), BadInput);  // nothing built yet
  EXPECT_EQ(BuildZooShard(grid, dir.path(), 0, 1, "cpu", "test-blas"), grid.Units());
  EXPECT_EQ(BuildZooShard(grid, dir.path(), 0, 1, "cpu", "test-blas"), 0);  // resumes: all done
  EXPECT_EQ(ZooUnitsDone(store, grid), grid.Units());
  EXPECT_NE(ZooListing(store, grid).find("8 of 8 training units built"), std::string::npos);
  const int64_t rows = ExportZoo(store, grid, "csv", dir / "z.csv");
  EXPECT_EQ(rows, grid.Units() * 2);  // two checkpoint bins, no early stop in 3 epochs
  auto [weights, bins] = ImportZooCsv(dir / "z.csv");
  ASSERT_EQ(weights.size(0), rows);
  EXPECT_EQ(weights.size(1), 2464);
  // Row order: unit by unit, bins ascending; the weights are the stored checkpoints, exactly.
  std::vector<torch::Tensor> expected;
  for (int64_t i = 0; i < grid.Units(); ++i) {
    const ZooUnit u = UnitAt(grid, i);
    for (int64_t bin : grid.checkpoints) {
      std::string path;
      for (const auto& r : store.ModelsOfGrid(grid.name)) {
        if (r.spec.value("kind", "") == "zoo_grid_checkpoint" && r.spec.at("classes") == nlohmann::json(u.classes) &&
            r.spec.at("activation") == u.activation && r.spec.at("bin") == bin) {
          path = r.path;
        }
      }
      ASSERT_FALSE(path.empty());
      ModelPtr m = MakeModel(ModelSpec{grid.arch, u.activation, u.init, 10});
      LoadModel(*m, path);
      std::vector<torch::Tensor> flat;
      for (const auto& p : m->parameters()) flat.push_back(p.detach().reshape({-1}));
      expected.push_back(torch::cat(flat));
    }
  }
  EXPECT_TRUE(torch::equal(weights, torch::stack(expected)));
  EXPECT_EQ(bins.front(), 2);
  ExportZoo(store, grid, "pt", dir / "z.pt");
  torch::serialize::InputArchive a;
  a.load_from(dir / "z.pt");
  torch::Tensor w;
  a.read("weights", w);
  EXPECT_TRUE(torch::equal(w, weights));
}

TEST(ZooGridTest, UnitsSharingAnInitStartIdentical) {
  const ZooGrid grid = LoadZooGrid("quick");
  const ZooUnit a = UnitAt(grid, 0), b = UnitAt(grid, grid.Units() - 1);
  ASSERT_NE(a.classes, b.classes);
  ASSERT_NE(a.activation, b.activation);
  torch::manual_seed(static_cast<uint64_t>(a.seed));
  ModelPtr ma = MakeModel(ModelSpec{grid.arch, a.activation, a.init, 10});
  torch::manual_seed(static_cast<uint64_t>(b.seed));
  ModelPtr mb = MakeModel(ModelSpec{grid.arch, b.activation, b.init, 10});
  auto pb = mb->parameters();
  size_t i = 0;
  for (const auto& p : ma->parameters()) EXPECT_TRUE(torch::equal(p, pb[i++]));
}

}  // namespace
}  // namespace tb
