#include "experiments/metrics/continual.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "store/errors.h"

namespace tb {
namespace {

size_t CheckSquare(const AccuracyMatrix& r) {
  const size_t k = r.size();
  for (size_t i = 0; i < k; ++i) {
    if (r[i].size() != k) {
      throw BadInput(fmt::format("accuracy matrix row {} has {} entries (expected {}, a square matrix)",
                                 i, r[i].size(), k));
    }
  }
  return k;
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

double ForgettingMax(const AccuracyMatrix& r) {
  const size_t k = CheckSquare(r);
  if (k < 2) return kNaN;
  double sum = 0;
  for (size_t j = 0; j + 1 < k; ++j) {
    double best = r[0][j];
    for (size_t l = 0; l + 1 < k; ++l) best = std::max(best, r[l][j]);
    sum += best - r[k - 1][j];
  }
  return sum / static_cast<double>(k - 1);
}

double ForgettingFirst(const AccuracyMatrix& r) {
  const size_t k = CheckSquare(r);
  if (k < 2) return kNaN;
  double sum = 0;
  for (size_t j = 0; j + 1 < k; ++j) sum += r[j][j] - r[k - 1][j];
  return sum / static_cast<double>(k - 1);
}

double BackwardTransfer(const AccuracyMatrix& r) {
  const double f = ForgettingFirst(r);
  return f == f ? -f : kNaN;
}

double ForwardTransfer(const AccuracyMatrix& r, const std::vector<double>& b) {
  const size_t k = CheckSquare(r);
  if (b.size() != k) {
    throw BadInput(fmt::format("random-init accuracies: {} entries (expected {}, one per task)", b.size(), k));
  }
  if (k < 2) return kNaN;
  double sum = 0;
  for (size_t j = 1; j < k; ++j) sum += r[j - 1][j] - b[j];
  return sum / static_cast<double>(k - 1);
}

}  // namespace tb
