// One forward + backward of each weight-space loss on the merging report's batch: B = 36
// predicted cnn2464 weight vectors (P = 2,464, zoo export's layer order) against their targets,
// float32. The entropic OT losses run on `points` = 256 quantiles of each vector (their full
// 2,464 x 2,464 problems are optional; the benchmark name says which).
//   build/bin/tb_bench --benchmark_filter=Loss
#include <benchmark/benchmark.h>

#include "experiments/cli/environment.h"
#include "experiments/losses/loss.h"

namespace tb {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;

void BM_WeightLoss(benchmark::State& state, const std::string& name, const Settings& set) {
  ConfigureTorch(0);
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  LossInputs in;
  DescribeModel(in, ModelSpec{"cnn2464"});
  const int64_t batch = 36, p = in.layer_bounds.back();
  in.target = 0.1 * torch::randn({batch, p});  // on the scale of trained weights
  const auto predicted = (in.target + 0.05 * torch::randn({batch, p})).requires_grad_(true);
  in.predicted = predicted;
  torch::autograd::grad({loss->Compute(in)}, {predicted});  // warm-up: the allocator's first growth
  for (auto _ : state) {
    const auto value = loss->Compute(in);
    benchmark::DoNotOptimize(torch::autograd::grad({value}, {predicted}));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
const Settings kNone = {}, kPoints256 = {{"points", "256"}};
BENCHMARK_CAPTURE(BM_WeightLoss, mse, "mse", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, layerwise_normalized_mse, "layerwise_normalized_mse", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, quantile, "quantile", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, norm_difference, "norm_difference", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, mape, "mape", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, fft_difference, "fft_difference", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, autoregressive_mse, "autoregressive_mse", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, jensen_shannon, "jensen_shannon", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, sinkhorn_points256, "sinkhorn", kPoints256)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, sliced_wasserstein, "sliced_wasserstein", kNone)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, sliced_wasserstein_dim4, "sliced_wasserstein", Settings{{"dim", "4"}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_WeightLoss, gromov_wasserstein_points256, "gromov_wasserstein", kPoints256)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tb
