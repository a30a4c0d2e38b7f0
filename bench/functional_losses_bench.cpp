// The functional losses (experiments/losses/functional_losses.cpp), forward and backward w.r.t.
// the predicted vectors, at the merging report's batch: B = 36 predicted cnn2464 networks
// (P = 2,464) on a probe of 32 images; and the functional forward against the nn models'.
#include <benchmark/benchmark.h>

#include "experiments/cli/environment.h"
#include "experiments/losses/loss.h"
#include "experiments/models/functional.h"

namespace tb {
namespace {

const ModelSpec kSpec{"cnn2464", "relu", "kaiming_uniform"};
constexpr int64_t kBatch = 36, kProbe = 32;

std::vector<ModelPtr> Models(int64_t count, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<ModelPtr> models;
  for (int64_t i = 0; i < count; ++i) models.push_back(MakeModel(kSpec));
  return models;
}

torch::Tensor Flats(const std::vector<ModelPtr>& models) {
  std::vector<torch::Tensor> rows;
  for (const auto& m : models) {
    std::vector<torch::Tensor> parts;
    for (const auto& p : m->parameters()) parts.push_back(p.detach().flatten());
    rows.push_back(torch::cat(parts));
  }
  return torch::stack(rows);
}

void BM_LossFunctional(benchmark::State& state, const std::string& name,
                       const std::vector<std::pair<std::string, std::string>>& set) {
  ConfigureTorch(0);
  LossInputs in;
  DescribeModel(in, kSpec);
  const auto predicted = Flats(Models(kBatch, 1));
  in.target = Flats(Models(kBatch, 2));
  in.probe = torch::rand({kProbe, 1, 28, 28});
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  for (auto _ : state) {
    in.predicted = predicted.clone().requires_grad_(true);
    loss->Compute(in).backward();
    benchmark::DoNotOptimize(in.predicted.grad().data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK_CAPTURE(BM_LossFunctional, jacobian_frobenius, std::string("jacobian_frobenius"),
                  std::vector<std::pair<std::string, std::string>>{})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossFunctional, jacobian_frobenius_k2, std::string("jacobian_frobenius"),
                  std::vector<std::pair<std::string, std::string>>{{"projections", "2"}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossFunctional, fisher, std::string("fisher"), std::vector<std::pair<std::string, std::string>>{})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LossFunctional, contractive, std::string("contractive"),
                  std::vector<std::pair<std::string, std::string>>{})
    ->Unit(benchmark::kMillisecond);

// The 36 networks' logits on the probe: one batched functional call (one network at a time) ...
void BM_FunctionalLogits(benchmark::State& state) {
  ConfigureTorch(0);
  const auto flat = Flats(Models(kBatch, 1));
  const auto images = torch::rand({kProbe, 1, 28, 28});
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(FunctionalLogits(kSpec, flat, images).data_ptr());
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_FunctionalLogits)->Unit(benchmark::kMillisecond);

// ... the per-sample layout of the Fisher: B·N networks, one image each, as grouped convolutions ...
void BM_FunctionalLogitsPerSample(benchmark::State& state) {
  ConfigureTorch(0);
  const auto flat = Flats(Models(kBatch, 1)).repeat_interleave(kProbe, 0);  // [B·N, P]
  const auto images = torch::rand({kProbe, 1, 28, 28}).repeat({kBatch, 1, 1, 1}).reshape({kBatch * kProbe, 1, 1, 28, 28});
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(FunctionalLogits(kSpec, flat, images).data_ptr());
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_FunctionalLogitsPerSample)->Unit(benchmark::kMillisecond);

// ... against the baseline, the 36 nn models' forward.
void BM_FunctionalNnForward(benchmark::State& state) {
  ConfigureTorch(0);
  const auto models = Models(kBatch, 1);
  const auto images = torch::rand({kProbe, 1, 28, 28});
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    for (const auto& m : models) benchmark::DoNotOptimize(m->forward(images).data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_FunctionalNnForward)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tb
