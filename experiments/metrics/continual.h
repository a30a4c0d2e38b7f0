// Continual-learning metrics as pure functions of a stored accuracy matrix.
//
// R[i][j] is the accuracy on task j after training on task i (tasks 0..K-1 here; the
// glossary numbers them 1..K). b[j] is the accuracy on task j of the random-init model.
// Sign conventions: forgetting is positive when accuracy was lost; bwt is negative when
// accuracy was lost (bwt = -forgetting_first); fwt is positive when earlier tasks helped.
//
//   std::vector<std::vector<double>> R = {{0.9, 0.1, 0.1}, {0.7, 0.8, 0.2}, {0.6, 0.7, 0.9}};
//   double f = tb::ForgettingMax(R);   // ((0.9 - 0.6) + (0.8 - 0.7)) / 2 = 0.2
#pragma once

#include <vector>

namespace tb {

using AccuracyMatrix = std::vector<std::vector<double>>;

// Chaudhry et al.: mean over j < K-1 of max_{l < K-1} R[l][j] - R[K-1][j].
double ForgettingMax(const AccuracyMatrix& r);
// Avalanche: mean over j < K-1 of R[j][j] - R[K-1][j].
double ForgettingFirst(const AccuracyMatrix& r);
// GEM backward transfer: mean over j < K-1 of R[K-1][j] - R[j][j].
double BackwardTransfer(const AccuracyMatrix& r);
// GEM forward transfer: mean over j >= 1 of R[j-1][j] - b[j].
double ForwardTransfer(const AccuracyMatrix& r, const std::vector<double>& b);

}  // namespace tb
