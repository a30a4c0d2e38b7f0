#include "experiments/cli/environment.h"

#include <dlfcn.h>
#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <malloc.h>

#include <fmt/format.h>
#include <torch/version.h>

namespace tb {
namespace {

std::string CommandOutput(const std::string& command) {
  std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
  if (!pipe) return "";
  std::string out;
  std::array<char, 256> buf{};
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string BlasKind(const std::string& path) {
  if (path.empty()) return "none";
  if (path.find("openblas") != std::string::npos) return "openblas";
  if (path.find("mkl") != std::string::npos) return "mkl";
  if (path.find("blis") != std::string::npos) return "blis";
  if (path.find("atlas") != std::string::npos) return "atlas";
  if (path.find("/blas/") != std::string::npos) return "reference";
  return "unknown";
}

}  // namespace

// OpenBLAS's own introspection, looked up at run time: libblas.so.3 may be another BLAS.
template <class Fn>
Fn OpenBlasSymbol(void* handle, const char* name) {
  return reinterpret_cast<Fn>(dlsym(handle ? handle : RTLD_DEFAULT, name));
}

BlasInfo LoadedBlas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  BlasInfo info{"", "none"};
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    const auto base = path.substr(path.rfind('/') + 1);
    if (base.rfind("libblas.so", 0) == 0 || base.rfind("libopenblas", 0) == 0 || base.rfind("libmkl_rt", 0) == 0) {
      info.path = path;
      info.kind = BlasKind(path);
      if (base.rfind("libblas.so", 0) == 0) break;  // the one LibTorch calls
    }
  }
  // Asked of the BLAS LibTorch calls, not of whatever else is mapped (a reference libblas beside
  // an OpenBLAS liblapack would otherwise report OpenBLAS's kernel).
  if (info.kind == "openblas") {
    void* handle = dlopen(info.path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (auto corename = OpenBlasSymbol<char* (*)()>(handle, "openblas_get_corename")) info.core = corename();
    if (auto config = OpenBlasSymbol<char* (*)()>(handle, "openblas_get_config")) info.config = config();
    if (auto threads = OpenBlasSymbol<int (*)()>(handle, "openblas_get_num_threads")) info.threads = threads();
    if (handle) dlclose(handle);
  }
  for (char** e = environ; *e; ++e) {
    const std::string var = *e;
    if (var.rfind("OPENBLAS_", 0) == 0 && var.find('=') != std::string::npos) {
      info.variables[var.substr(0, var.find('='))] = var.substr(var.find('=') + 1);
    }
  }
  return info;
}

std::string BlasIdentity() {
  // Fixed for the process (the library and kernel are chosen when it loads): read once.
  static const std::string id = [] {
    const BlasInfo b = LoadedBlas();
    std::string s = b.kind;
    if (!b.config.empty()) s += " " + b.config;
    if (!b.core.empty()) s += " " + b.core;
    return s;
  }();
  return id;
}

std::string BlasCheckFailure(const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& product) {
  // (rows, inner, columns, layout): a batch through the first layer of the MLPs, a wide hidden
  // layer, the 10-way head, and odd sizes that take the kernels' edge paths; in the three
  // layouts training uses: x · Wᵀ (forward), g · W (the input's gradient), gᵀ · x (the weight's).
  enum Layout { kForward, kInputGrad, kWeightGrad };
  const struct {
    int64_t n, k, m;
    Layout layout;
  } shapes[] = {{64, 784, 256, kForward}, {128, 512, 10, kForward}, {37, 129, 65, kForward}, {1, 300, 7, kForward},
                {64, 256, 784, kInputGrad}, {37, 65, 129, kInputGrad}, {256, 64, 784, kWeightGrad},
                {65, 37, 129, kWeightGrad}};
  torch::NoGradGuard no_grad;
  for (const auto& [n, k, m, layout] : shapes) {
    // Fixed, sign-mixed values with no random generator (the run's seeding stays untouched).
    auto a = torch::sin(torch::arange(n * k, torch::kFloat32).reshape({n, k}) * 0.618f + 0.3f);
    auto b = torch::cos(torch::arange(m * k, torch::kFloat32).reshape({m, k}) * 1.414f).t();
    if (layout == kInputGrad) b = b.contiguous();  // W as stored, not transposed
    if (layout == kWeightGrad) a = a.t().contiguous().t();  // gᵀ: a transposed view
    auto got = product(a, b).to(torch::kFloat64).contiguous();
    auto ad = a.to(torch::kFloat64).contiguous(), bd = b.to(torch::kFloat64).contiguous();
    const double* pa = ad.data_ptr<double>();
    const double* pb = bd.data_ptr<double>();
    const double* pg = got.data_ptr<double>();
    if (got.size(0) != n || got.size(1) != m) return fmt::format("{}x{} · {}x{}: result has the wrong shape", n, k, k, m);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        double sum = 0, scale = 0;
        for (int64_t l = 0; l < k; ++l) {
          sum += pa[i * k + l] * pb[l * m + j];
          scale += std::abs(pa[i * k + l] * pb[l * m + j]);
        }
        // Float rounding of k products grows like k · 2^-24 of their magnitudes; allow 8 times that.
        const double tol = 8.0 * static_cast<double>(k) * 6e-8 * scale + 1e-6;
        if (!(std::abs(pg[i * m + j] - sum) <= tol)) {
          return fmt::format("{}x{} · {}x{}: element ({}, {}) is {:.9g}, expected {:.9g}", n, k, k, m, i, j,
                             pg[i * m + j], sum);
        }
      }
    }
  }
  return "";
}

void CheckBlasOnce() {
  static const std::string failure = BlasCheckFailure([](const torch::Tensor& a, const torch::Tensor& b) {
    return torch::mm(a, b);
  });
  if (failure.empty()) return;
  const BlasInfo blas = LoadedBlas();
  throw std::runtime_error(fmt::format(
      "the BLAS computes wrong matrix products on this CPU ({}; {} kernel {}; {}): refusing to run. Fix: pick "
      "another kernel, e.g. OPENBLAS_CORETYPE=Haswell (or Sandybridge, Prescott), or another BLAS with "
      "update-alternatives --config libblas.so.3-x86_64-linux-gnu",
      failure, blas.kind, blas.core.empty() ? "unknown" : blas.core, blas.path));
}

GitState SourceGitState() {
  static const GitState state = [] {
    GitState s;
    const std::string dir = TB_SOURCE_DIR;
    s.commit = CommandOutput(fmt::format("git -C '{}' rev-parse HEAD 2>/dev/null", dir));
    if (!s.commit.empty()) {
      s.dirty = !CommandOutput(fmt::format("git -C '{}' status --porcelain --untracked-files=no 2>/dev/null", dir)).empty();
    }
    return s;
  }();
  return state;
}

nlohmann::json CaptureEnvironment(const torch::Device& device) {
  utsname u{};
  uname(&u);
  const BlasInfo blas = LoadedBlas();
  return {{"libtorch", TORCH_VERSION},
          {"compiler", fmt::format("{} {}", "gcc", __VERSION__)},
          {"cxx_standard", __cplusplus},
          {"threads", at::get_num_threads()},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"usable_cores", UsableCores()},
          {"cpu", CpuModel()},
          {"os", fmt::format("{} {} {}", u.sysname, u.release, u.machine)},
          {"blas", blas.kind},
          {"blas_path", blas.path},
          {"blas_core", blas.core},
          {"blas_config", blas.config},
          {"blas_threads", blas.threads},
          {"blas_variables", blas.variables},
          {"device", device.str()},
          {"cuda_available", torch::cuda::is_available()},
          {"transferbench", "0.1.0"}};
}

void WarnIfReferenceBlas() {
  static bool warned = false;
  if (warned) return;
  warned = true;
  const BlasInfo blas = LoadedBlas();
  if (blas.kind == "reference") {
    std::cerr << fmt::format(
        "warning: LibTorch is using the reference BLAS ({}), 15-30x slower than OpenBLAS; run scripts/setup "
        "(it installs libopenblas0-openmp and selects it)\n",
        blas.path);
  }
}

void KeepFreedMemory() {
  static bool done = false;
  if (done) return;
  done = true;
  // glibc serves blocks above its mmap threshold with fresh mappings and hands them back on
  // free, so every large activation of a forward pass costs page faults: measured on a merge
  // run here, 19.6 s of system time in 24.4 s. Keep freed memory in the heap instead (the
  // largest threshold glibc accepts, and no trimming below 1 GiB); results are unchanged.
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

int64_t UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int64_t ConfigureTorch(int64_t threads) {
  const int64_t n = threads > 0 ? threads : UsableCores();
  at::set_num_threads(static_cast<int>(n));
  // Deterministic cuBLAS needs a fixed workspace; set before the first CUDA call.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  KeepFreedMemory();
  return n;
}

}  // namespace tb
