// Micro-benchmarks. Run: build/bin/tb_bench [--benchmark_repetitions=5]. Compare two builds or
// two BLAS libraries with google/benchmark's compare.py on the JSON outputs
// (--benchmark_out=FILE --benchmark_out_format=json); the environment block names the BLAS.
#include <benchmark/benchmark.h>

#include <filesystem>

#include <torch/version.h>

#include "experiments/cli/environment.h"
#include "experiments/models/model.h"
#include "experiments/train/trainer.h"
#include "store/run_store.h"

namespace tb {
namespace {

// Rows per second committed to the store, in transactions of `batch` rows.
void BM_StoreMetricInserts(benchmark::State& state) {
  const auto batch = state.range(0);
  const std::string path = std::filesystem::temp_directory_path() / "tb_bench_store.db";
  std::filesystem::remove(path);
  RunStore store(path);
  NewRun run;
  run.method = "bench";
  const std::string id = store.CreateRun(run);
  std::vector<MetricRow> rows;
  for (int64_t i = 0; i < batch; ++i) rows.push_back({i, "train/loss", 0.5, 0.0});
  for (auto _ : state) store.AppendMetrics(id, rows);
  state.SetItemsProcessed(state.iterations() * batch);
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
}
BENCHMARK(BM_StoreMetricInserts)->ArgNames({"batch"})->Args({1})->Args({64})->Args({512})->Unit(benchmark::kMicrosecond);

// One Adam step on a batch of 64 random 28x28 images.
void BM_TrainStep(benchmark::State& state, const std::string& arch) {
  ConfigureTorch(0);
  torch::manual_seed(0);
  auto model = MakeModel(ModelSpec{arch});
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::rand({state.range(0), 1, 28, 28});
  auto y = torch::randint(0, 10, {state.range(0)}, torch::kInt64);
  for (auto _ : state) benchmark::DoNotOptimize(TrainStep(*model, opt, x, y));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK_CAPTURE(BM_TrainStep, cnn2464, std::string("cnn2464"))->ArgNames({"batch"})->Args({64})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_TrainStep, wide, std::string("wide"))->ArgNames({"batch"})->Args({64})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_TrainStep, superwide, std::string("superwide"))->ArgNames({"batch"})->Args({64})->Unit(benchmark::kMicrosecond);

// A square float32 matrix product: FLOP/s shows which BLAS is in use.
void BM_MatMul(benchmark::State& state) {
  ConfigureTorch(0);
  const auto n = state.range(0);
  auto a = torch::rand({n, n});
  auto b = torch::rand({n, n});
  for (auto _ : state) benchmark::DoNotOptimize(torch::mm(a, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_MatMul)->ArgNames({"n"})->Args({1024})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tb

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const auto blas = tb::LoadedBlas();
  benchmark::AddCustomContext("blas", blas.kind + " " + blas.path);
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
