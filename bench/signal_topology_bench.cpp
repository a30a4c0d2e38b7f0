// The signal and topological losses on the merging report's batch: B = 36 predicted cnn2464
// weight vectors (P = 2,464, zoo export's layer order, DescribeModel's layer shapes) against their
// targets, float32. One forward + backward of each differentiable loss; forward only for
// bottleneck, a metric without a gradient.
//   build/bin/tb_bench --benchmark_filter=BM_Loss
#include <benchmark/benchmark.h>

#include "experiments/cli/environment.h"
#include "experiments/losses/loss.h"

namespace tb {
namespace {

void BM_LossSignalTopology(benchmark::State& state, const std::string& name, bool backward) {
  ConfigureTorch(0);
  torch::manual_seed(0);
  auto loss = Losses().Find(name).make();
  LossInputs in;
  DescribeModel(in, ModelSpec{"cnn2464", "relu", "kaiming_uniform"});
  const int64_t batch = 36, p = in.layer_bounds.back();
  in.target = 0.1 * torch::randn({batch, p});  // on the scale of trained weights
  const auto predicted = (in.target + 0.05 * torch::randn({batch, p})).requires_grad_(backward);
  in.predicted = predicted;
  for (auto _ : state) {
    const auto value = loss->Compute(in);
    if (backward) {
      benchmark::DoNotOptimize(torch::autograd::grad({value}, {predicted}));
    } else {
      benchmark::DoNotOptimize(value);
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK_CAPTURE(BM_LossSignalTopology, mel_difference, "mel_difference", true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossSignalTopology, ms_fid, "ms_fid", true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossSignalTopology, bottleneck_forward, "bottleneck", false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossSignalTopology, persistence, "persistence", true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossSignalTopology, multipersistence, "multipersistence", true)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tb
