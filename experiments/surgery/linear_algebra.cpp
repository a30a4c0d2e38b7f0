#include "experiments/surgery/linear_algebra.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "store/errors.h"

namespace tb {

torch::Tensor Procrustes(const torch::Tensor& source, const torch::Tensor& target) {
  auto m = source.to(torch::kFloat64).t().mm(target.to(torch::kFloat64));
  auto [u, s, vh] = torch::linalg_svd(m, /*full_matrices=*/false);
  return u.mm(vh).to(source.dtype());
}

double AlignmentError(const torch::Tensor& source, const torch::Tensor& r, const torch::Tensor& target) {
  return (source.mm(r) - target).norm().item<double>() / std::max(1e-12, target.norm().item<double>());
}

torch::Tensor FreeDirections(const torch::Tensor& used, int64_t k) {
  const int64_t c = used.size(1);
  if (k < 1 || k > c) throw BadInput(fmt::format("free directions k={}: expected 1..{}", k, c));
  auto [u, s, vh] = torch::linalg_svd(used.to(torch::kFloat64).t(), /*full_matrices=*/true);
  return u.slice(1, c - k, c).to(used.dtype());
}

Stitch FitStitch(const torch::Tensor& from, const torch::Tensor& to, double ridge) {
  if (from.size(0) != to.size(0)) {
    throw BadInput(fmt::format("stitch: {} source rows but {} target rows", from.size(0), to.size(0)));
  }
  auto x = from.to(torch::kFloat64);
  auto y = to.to(torch::kFloat64);
  const int64_t n = x.size(0), d = x.size(1);
  auto xa = torch::cat({x, torch::ones({n, 1}, x.options())}, 1);
  auto gram = xa.t().mm(xa);
  if (ridge > 0) {
    auto reg = torch::eye(d + 1, x.options()) * ridge;
    reg.index_put_({d, d}, 0.0);  // no penalty on the bias
    gram = gram + reg;
  }
  auto w = torch::linalg_solve(gram, xa.t().mm(y));
  return Stitch{w.slice(0, 0, d).to(from.dtype()), w[d].to(from.dtype())};
}

std::pair<torch::Tensor, torch::Tensor> StitchHeadRow(const Stitch& stitch, const torch::Tensor& row,
                                                      const torch::Tensor& bias) {
  auto new_row = stitch.weight.mv(row);
  auto new_bias = bias + row.dot(stitch.bias);
  return {new_row, new_bias};
}

double CalibrationShift(const torch::Tensor& logits, const torch::Tensor& labels, const std::vector<int64_t>& classes,
                        int64_t reference_correct, double threshold, double max_shift) {
  auto l = logits.to(torch::kFloat64).to(torch::kCPU);
  auto y = labels.to(torch::kCPU);
  auto others = l.clone();
  for (int64_t cls : classes) others.select(1, cls).fill_(-std::numeric_limits<double>::infinity());
  auto [best_other, best_idx] = others.max(1);
  auto own = std::get<0>(l.index_select(1, torch::tensor(classes, torch::kInt64)).max(1));
  // Correct now (excluding the transfer classes, which S_A samples never are): the prediction is
  // the label and no transfer class has overtaken it yet. Each is lost once δ >= best_other - own.
  auto correct = best_idx.eq(y).logical_and(own.lt(best_other));
  std::vector<double> crossings;
  auto c = correct.accessor<bool, 1>();
  auto gap = (best_other - own);
  auto g = gap.accessor<double, 1>();
  for (int64_t i = 0; i < l.size(0); ++i) {
    if (c[i]) crossings.push_back(g[i]);
  }
  std::sort(crossings.begin(), crossings.end());
  const double needed = threshold * static_cast<double>(reference_correct);
  const auto have = static_cast<double>(crossings.size());
  if (have < needed) {
    // Already below the threshold: the shift that restores it is negative; samples wrongly
    // taken by a transfer class come back as δ falls below -(own - best_other).
    std::vector<double> back;
    auto taken = own.ge(best_other).logical_and(best_idx.eq(y));
    auto t = taken.accessor<bool, 1>();
    for (int64_t i = 0; i < l.size(0); ++i) {
      if (t[i]) back.push_back(g[i]);  // g < 0 here
    }
    std::sort(back.rbegin(), back.rend());
    const auto missing = static_cast<size_t>(std::ceil(needed - have));
    if (missing > back.size()) return -max_shift;
    return std::max(-max_shift, back[missing - 1] - 1e-6);
  }
  // Lose at most floor(have - needed) samples: stop just before the next crossing.
  const auto can_lose = static_cast<size_t>(std::floor(have - needed + 1e-9));
  if (can_lose >= crossings.size()) return max_shift;
  return std::min(max_shift, crossings[can_lose] - 1e-6);
}

}  // namespace tb
