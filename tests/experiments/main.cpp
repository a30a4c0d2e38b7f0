// The experiment tests' main: the process is configured as the tools configure theirs, before
// the first tensor operation (a fixed intra-op thread count, deterministic algorithms), so that
// every matrix product runs with one thread count. Without it LibTorch resets OpenMP's count at
// its first parallel loop, and OpenBLAS, which follows that count, partitions the products
// before and after differently: the first forward pass of a process then differs from the
// second in its last bits, and tests of bit-for-bit equality fail on machines where the two
// counts differ (a container whose affinity mask is smaller than the host).
#include <gtest/gtest.h>

#include "experiments/cli/environment.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  tb::ConfigureTorch(0);
  return RUN_ALL_TESTS();
}
