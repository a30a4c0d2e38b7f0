// One training step of the learned merger (forward, MSE, backward, clipping, Adam) at the
// report's batch of 36 cnn2464 triples, for the quick and a mid-sized configuration; the same
// step in PyTorch is bench/merger_pytorch.py (ratios: bench/merger_speed.py).
#include <benchmark/benchmark.h>

#include "experiments/merge/merger.h"

namespace tb {
namespace {

void BM_MergerStep(benchmark::State& state) {
  MergerConfig c;
  c.d_model = state.range(0);
  c.layers = state.range(1);
  c.d_ff = 2 * c.d_model;
  c.neck = c.d_model;
  torch::manual_seed(0);
  const ModelSpec spec{"cnn2464", "relu", "kaiming_uniform"};
  auto model = MakeMerger(c, spec);
  const torch::Tensor w1 = torch::randn({36, 2464}) * 0.1, w2 = torch::randn({36, 2464}) * 0.1,
                      w3 = torch::randn({36, 2464}) * 0.1;
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  model->train();
  for (auto _ : state) {
    adam.zero_grad();
    torch::Tensor loss = (MergerForward(*model, w1, w2) - w3).pow(2).mean();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    adam.step();
    benchmark::DoNotOptimize(loss.item<double>());
  }
  state.counters["parameters"] = static_cast<double>(CountParameters(*model));
}
BENCHMARK(BM_MergerStep)->ArgNames({"d_model", "layers"})->Args({64, 1})->Args({128, 2})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tb
