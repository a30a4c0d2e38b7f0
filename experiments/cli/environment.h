// What a run records about where it ran: LibTorch version, compiler, threads, CPU, the BLAS
// library actually loaded, the device, and the git state of the source tree.
//
//   nlohmann::json env = tb::CaptureEnvironment(device);
//   tb::WarnIfReferenceBlas();   // once per process, on stderr
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace tb {

struct BlasInfo {
  std::string path;  // resolved path of the mapped libblas (empty if none is mapped)
  std::string kind;  // "openblas", "reference", "mkl", "blis", "atlas", "unknown" or "none"
};

// Reads /proc/self/maps for the BLAS library this process has loaded.
BlasInfo LoadedBlas();

nlohmann::json CaptureEnvironment(const torch::Device& device);

struct GitState {
  std::string commit;  // empty outside a checkout
  bool dirty = false;
};
GitState SourceGitState();

// Prints one warning on stderr, once per process, when the reference BLAS is in use.
void WarnIfReferenceBlas();

// Makes this process deterministic: seeds torch, turns on deterministic algorithms and sets
// the number of intra-op threads (0: all cores). Returns the number of threads in use.
int64_t ConfigureTorch(int64_t threads);

}  // namespace tb
