// One training step's forward and backward of a KAN refiner layer net [d, 4, d] (B-splines of
// order 3 on 5 intervals, experiments/merge/refiner.h) on a batch of neuron tokens, at the widths
// of cnn2464's conv1 (26) and conv2 (201) tokens; the batch is 48 pairs' tokens of such a layer.
// The matched MLP control's step is beside it (its `parameters` counter shows the match).
#include <benchmark/benchmark.h>

#include "experiments/merge/refiner.h"

namespace tb {
namespace {

template <class Net>
void Step(benchmark::State& state, Net& net, const torch::Tensor& x, const torch::Tensor& y) {
  for (auto _ : state) {
    net->zero_grad();
    torch::Tensor loss = (net->forward(x) - y).pow(2).mean();
    loss.backward();
    benchmark::DoNotOptimize(loss.item<double>());
  }
  state.counters["parameters"] = static_cast<double>(CountParameters(*net));
}

void BM_RefinerKanStep(benchmark::State& state) {
  const int64_t d = state.range(0), batch = state.range(1);
  torch::manual_seed(0);
  Kan net(std::vector<int64_t>{d, 4, d}, SplineGrid{});
  const torch::Tensor x = torch::randn({batch, d}), y = torch::randn({batch, d});
  Step(state, net, x, y);
}
BENCHMARK(BM_RefinerKanStep)->ArgNames({"width", "batch"})->Args({26, 384})->Args({201, 288})->Unit(benchmark::kMicrosecond);

void BM_RefinerMlpStep(benchmark::State& state) {
  const int64_t d = state.range(0), batch = state.range(1);
  torch::manual_seed(0);
  RefineMlp net(d, MatchedMlpHidden(d, d, KanParameterCount({d, 4, d}, SplineGrid{})), d);
  const torch::Tensor x = torch::randn({batch, d}), y = torch::randn({batch, d});
  Step(state, net, x, y);
}
BENCHMARK(BM_RefinerMlpStep)->ArgNames({"width", "batch"})->Args({26, 384})->Args({201, 288})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tb
