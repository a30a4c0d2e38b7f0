// What a run records about where it ran: LibTorch version, compiler, threads, CPU, the BLAS
// library actually loaded, the device, and the git state of the source tree.
//
//   nlohmann::json env = tb::CaptureEnvironment(device);
//   tb::WarnIfReferenceBlas();   // once per process, on stderr
#pragma once

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace tb {

struct BlasInfo {
  std::string path;  // resolved path of the mapped libblas (empty if none is mapped)
  std::string kind;  // "openblas", "reference", "mkl", "blis", "atlas", "unknown" or "none"
  // OpenBLAS only (empty otherwise): the kernel it picked for this CPU (openblas_get_corename:
  // "Haswell", "Cooperlake", ...; OPENBLAS_CORETYPE overrides the pick), its build
  // (openblas_get_config) and its thread count.
  std::string core, config;
  int64_t threads = 0;
  std::map<std::string, std::string> variables;  // the OPENBLAS_* environment variables set
};

// Reads /proc/self/maps for the BLAS library this process has loaded, and asks OpenBLAS which
// kernel it runs.
BlasInfo LoadedBlas();

// What the BLAS contributes to a result, in one string for the zoo key: the kind, and for
// OpenBLAS its build and kernel ("openblas OpenBLAS 0.3.21 ... Haswell"). The kernel changes the
// order of float sums, so weights trained under one differ in their last bits from another's.
std::string BlasIdentity();

// Multiplies a few matrices of the shapes the models use with the loaded BLAS and compares
// them with a plain double-precision product. Returns "" when they agree to float tolerance,
// else what failed. `product` is the product under test (tests pass a broken one).
std::string BlasCheckFailure(const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& product);

// Once per process: BlasCheckFailure on LibTorch's own product; throws (std::runtime_error,
// exit 1) with the kernel's name and the fix (OPENBLAS_CORETYPE) when it fails.
void CheckBlasOnce();

nlohmann::json CaptureEnvironment(const torch::Device& device);

struct GitState {
  std::string commit;  // empty outside a checkout
  bool dirty = false;
};
GitState SourceGitState();

// Prints one warning on stderr, once per process, when the reference BLAS is in use.
void WarnIfReferenceBlas();

// Keeps memory freed by LibTorch in the process (glibc's mallopt) rather than unmapping it,
// which costs page faults on every large tensor; once per process. ConfigureTorch calls it.
void KeepFreedMemory();

// The CPUs this process may run on (its affinity mask: a container's or taskset's share, as
// nproc counts them), not every CPU the host has; at least 1.
int64_t UsableCores();

// Makes this process deterministic: seeds torch, turns on deterministic algorithms and sets
// the number of intra-op threads (0: UsableCores()), before the first tensor operation, so
// every matrix product of the process runs with the same thread count (OpenBLAS partitions a
// product by it, and the partition changes the last bits). Returns the number of threads.
int64_t ConfigureTorch(int64_t threads);

}  // namespace tb
