#include "experiments/cli/environment.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

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
  return info;
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
          {"cpu", CpuModel()},
          {"os", fmt::format("{} {} {}", u.sysname, u.release, u.machine)},
          {"blas", blas.kind},
          {"blas_path", blas.path},
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

int64_t ConfigureTorch(int64_t threads) {
  const int64_t n = threads > 0 ? threads : static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(static_cast<int>(n));
  // Deterministic cuBLAS needs a fixed workspace; set before the first CUDA call.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  return n;
}

}  // namespace tb
