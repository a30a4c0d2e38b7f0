// Pure tensor functions behind the surgery methods: orthogonal Procrustes, free directions,
// the least-squares linear stitch and the head row it transplants, and the calibration shift.
// Each has a known-answer test in tests/experiments/surgery_test.cpp.
//
//   torch::Tensor r = tb::Procrustes(c_b, c_a);          // c_b r ≈ c_a, r orthogonal
//   torch::Tensor f = tb::FreeDirections(c_a, /*k=*/8);   // [c, k], orthonormal, ⟂ rows of c_a
//   tb::Stitch s = tb::FitStitch(feats_a, feats_b, /*ridge=*/0);
//   auto [row, bias] = tb::StitchHeadRow(s, b_row, b_bias);
#pragma once

#include <cstdint>
#include <utility>

#include <torch/torch.h>

namespace tb {

// The orthogonal R minimising ||source R - target||_F: R = U Vᵀ from the SVD of sourceᵀ target
// (source, target: [n, c], rows paired).
torch::Tensor Procrustes(const torch::Tensor& source, const torch::Tensor& target);

// ||source R - target||_F / ||target||_F.
double AlignmentError(const torch::Tensor& source, const torch::Tensor& r, const torch::Tensor& target);

// The last k left singular vectors of usedᵀ (used: [n, c] centroids, one per row): k
// orthonormal directions of the c-dimensional space that the centroids use least (none at all
// when n <= c - k). Returns [c, k].
torch::Tensor FreeDirections(const torch::Tensor& used, int64_t k);

// A linear map from features of one model to another's: to ≈ from · weight + bias.
struct Stitch {
  torch::Tensor weight;  // [d_from, d_to]
  torch::Tensor bias;    // [d_to]
};

// Least squares (with an optional ridge term on the weight, not the bias), in float64.
Stitch FitStitch(const torch::Tensor& from, const torch::Tensor& to, double ridge);

// The head row and bias over `from` features that reproduce row·to + bias through the stitch.
std::pair<torch::Tensor, torch::Tensor> StitchHeadRow(const Stitch& stitch, const torch::Tensor& row,
                                                      const torch::Tensor& bias);

// The largest shift δ of the transfer classes' logits (all shifted alike) such that the samples
// of `logits` (the target's S_A validation data, [n, C]; no label among `classes`) keep at least
// `threshold` of the accuracy they had at δ = 0 relative to `reference_correct` (how many the
// original target got right). Exact: the accuracy only changes where the best transfer-class
// logit overtakes a sample's best other logit. Capped at ±`max_shift`.
double CalibrationShift(const torch::Tensor& logits, const torch::Tensor& labels, const std::vector<int64_t>& classes,
                        int64_t reference_correct, double threshold, double max_shift);

}  // namespace tb
