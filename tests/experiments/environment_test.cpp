// What a run records about the BLAS, and the once-per-process check that it multiplies right.
#include <gtest/gtest.h>

#include "experiments/cli/environment.h"

namespace tb {
namespace {

// Review 19.11: the kernel OpenBLAS picked was recorded nowhere.
TEST(EnvironmentTest, RecordsTheBlasKernelItsThreadsAndVariables) {
  const BlasInfo blas = LoadedBlas();
  const nlohmann::json env = CaptureEnvironment(torch::kCPU);
  for (const char* key : {"blas", "blas_core", "blas_config", "blas_threads", "blas_variables"}) {
    EXPECT_TRUE(env.contains(key)) << key;
  }
  if (blas.kind != "openblas") GTEST_SKIP() << "OpenBLAS is not the loaded BLAS (" << blas.kind << ")";
  EXPECT_FALSE(blas.core.empty());
  EXPECT_NE(blas.config.find("OpenBLAS"), std::string::npos) << blas.config;
  EXPECT_GE(blas.threads, 1);
  EXPECT_NE(BlasIdentity().find(blas.core), std::string::npos);
  if (const char* core = std::getenv("OPENBLAS_CORETYPE")) EXPECT_EQ(env["blas_variables"]["OPENBLAS_CORETYPE"], core);
}

TEST(EnvironmentTest, BlasCheckPassesTheLoadedBlasAndCatchesAWrongProduct) {
  EXPECT_EQ(BlasCheckFailure([](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b); }), "");
  // One element off by a thousandth of its row's magnitude: what a bad kernel's edge path does.
  const std::string edge = BlasCheckFailure([](const torch::Tensor& a, const torch::Tensor& b) {
    auto c = torch::mm(a, b);
    if (a.size(0) == 37) c[36][64] += 0.05;
    return c;
  });
  EXPECT_EQ(edge.rfind("37x129 · 129x65: element (36, 64) is ", 0), 0u) << edge;
  // A kernel that is off by 5% everywhere.
  const std::string layout = BlasCheckFailure(
      [](const torch::Tensor& a, const torch::Tensor& b) { return torch::mm(a, b) * 1.05; });
  EXPECT_NE(layout.find(": element ("), std::string::npos) << layout;
  EXPECT_NO_THROW(CheckBlasOnce());
}

}  // namespace
}  // namespace tb
