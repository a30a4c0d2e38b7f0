// Losses that read a weight vector as a signal (the merging report, 4.5.12-13), between a
// predicted vector p and its target t, both [B, P]; each is the mean over B.
// The mel spectrogram M(w) [T, M]: frames of `frame` samples every `hop` (T = 1 + ⌊(P − frame) /
// hop⌋; samples after the last whole frame are left out), a periodic Hann window, the power
// |rFFT|² of each frame, and `mels` triangular filters (HTK: peak 1, no area normalisation)
// whose edges are equally spaced on the mel scale mel(f) = 2595 log10(1 + f/700) from 0 to
// sample_rate/2. A weight vector has no sample rate: `sample_rate` is nominal, it maps the
// normalised frequency axis [0, 0.5] cycles per weight to [0, sample_rate/2] Hz and so sets where
// the mel scale bends (at 700 Hz). With `log`, M = log(floor + mel power).
//  - mel_difference: the report's 4.5.12, ||M(p) − M(t)||_F.
//  - ms_fid: the report's 4.5.13, the Fréchet distance of the Gaussians fitted to the frames of
//    M(p) and M(t) (μ the mean over frames, Σ the covariance, 1/(T − 1), plus eps·I):
//    ||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2(Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}). Σ1^{1/2} by symmetric
//    eigendecomposition (eigenvalues clamped at 0); the trace of the outer root is the sum of the
//    square roots of its eigenvalues. Differentiable, with eigh's usual caveat: its gradient
//    divides by differences of eigenvalues, so it is unreliable when Σ1 has (nearly) repeated
//    eigenvalues, as it does when T − 1 < mels (a rank-deficient Σ1 whose null space eps fills).
#include <cmath>

#include <fmt/format.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

struct MelOptions {
  int64_t frame = 256;
  int64_t hop = 64;
  int64_t mels = 32;
  double sample_rate = 16000;
  bool log = true;
  double floor = 1e-10;
  void Bind(Options& o) {
    o.Add("frame", &frame, "samples (weights) per frame, the FFT length");
    o.Add("hop", &hop, "samples between frame starts");
    o.Add("mels", &mels, "triangular mel filters");
    o.Add("sample_rate", &sample_rate, "nominal rate in Hz that maps [0, 0.5] cycles per weight to [0, rate/2] Hz");
    o.Add("log", &log, "compare log(floor + mel power) rather than the mel power");
    o.Add("floor", &floor, "added to the mel power before the log");
  }
};

// [frame/2 + 1, mels]: bin k (frequency k · sample_rate / frame Hz) to filter m.
torch::Tensor MelFilterBank(const MelOptions& o, const torch::TensorOptions& options) {
  const int64_t bins = o.frame / 2 + 1;
  const auto mel = [](double f) { return 2595.0 * std::log10(1.0 + f / 700.0); };
  const auto hz = [](double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); };
  std::vector<double> edges(o.mels + 2);
  for (int64_t i = 0; i < o.mels + 2; ++i) edges[i] = hz(mel(o.sample_rate / 2) * i / (o.mels + 1));
  auto bank = torch::zeros({bins, o.mels}, torch::kDouble);
  auto acc = bank.accessor<double, 2>();
  for (int64_t k = 0; k < bins; ++k) {
    const double f = k * o.sample_rate / o.frame;
    for (int64_t m = 0; m < o.mels; ++m) {
      const double rise = (f - edges[m]) / (edges[m + 1] - edges[m]);
      const double fall = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
      acc[k][m] = std::max(0.0, std::min(rise, fall));
    }
  }
  return bank.to(options);
}

// [B, P] to [B, T, mels]; BadInput for options that make no spectrogram of P samples.
torch::Tensor MelSpectrogram(const torch::Tensor& x, const MelOptions& o) {
  const int64_t p = x.size(1);
  if (o.frame < 2 || o.frame > p) throw BadInput(fmt::format("frame={}: expected 2..{} (the vector's length)", o.frame, p));
  if (o.hop < 1) throw BadInput(fmt::format("hop={}: expected >= 1", o.hop));
  if (o.mels < 1) throw BadInput(fmt::format("mels={}: expected >= 1", o.mels));
  if (!(o.sample_rate > 0)) throw BadInput(fmt::format("sample_rate={}: expected > 0", o.sample_rate));
  if (!(o.floor >= 0)) throw BadInput(fmt::format("floor={}: expected >= 0", o.floor));
  const auto frames = x.unfold(1, o.frame, o.hop) * torch::hann_window(o.frame, /*periodic=*/true, x.options());
  const auto spectrum = torch::view_as_real(torch::fft::rfft(frames, /*n=*/c10::nullopt, /*dim=*/-1));
  const auto mel = spectrum.pow(2).sum(-1).matmul(MelFilterBank(o, x.options()));
  return o.log ? torch::log(o.floor + mel) : mel;
}

class MelDifference : public LossWithOptions<MelOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "mel_difference");
    const auto diff = MelSpectrogram(w.predicted, opts()) - MelSpectrogram(w.target, opts());
    return diff.flatten(1).norm(2, 1).mean();
  }
};

struct FidOptions : MelOptions {
  double eps = 1e-6;
  void Bind(Options& o) {
    MelOptions::Bind(o);
    o.Add("eps", &eps, "ridge added to both covariances' diagonals");
  }
};

// √x with gradient 0 (not ∞ · 0 = NaN) where x = 0.
torch::Tensor SafeSqrt(const torch::Tensor& x) {
  const auto positive = x > 0;
  return torch::where(positive, torch::sqrt(torch::where(positive, x, torch::ones_like(x))), torch::zeros_like(x));
}

// Square roots of a batch of symmetric positive semi-definite matrices [B, M, M].
torch::Tensor SymmetricSqrt(const torch::Tensor& s) {
  const auto [values, vectors] = torch::linalg_eigh(s);
  return (vectors * SafeSqrt(values.clamp_min(0)).unsqueeze(-2)).matmul(vectors.transpose(-2, -1));
}

// The Fréchet distances of the Gaussian statistics of two batches of [T, M] feature sets: [B].
torch::Tensor Frechet(const torch::Tensor& a, const torch::Tensor& b, double eps) {
  const auto ridge = eps * torch::eye(a.size(2), a.options());
  const auto mean_a = a.mean(1, /*keepdim=*/true), mean_b = b.mean(1, /*keepdim=*/true);
  const auto ca = a - mean_a, cb = b - mean_b;
  const auto cov_a = ca.transpose(1, 2).matmul(ca) / static_cast<double>(a.size(1) - 1) + ridge;
  const auto cov_b = cb.transpose(1, 2).matmul(cb) / static_cast<double>(b.size(1) - 1) + ridge;
  const auto root_a = SymmetricSqrt(cov_a);
  auto inner = root_a.matmul(cov_b).matmul(root_a);
  inner = (inner + inner.transpose(1, 2)) / 2;  // symmetric up to rounding
  const auto trace_root = SafeSqrt(torch::linalg_eigvalsh(inner).clamp_min(0)).sum(1);
  const auto trace = [](const torch::Tensor& c) { return c.diagonal(0, 1, 2).sum(1); };
  return (mean_a - mean_b).pow(2).flatten(1).sum(1) + trace(cov_a) + trace(cov_b) - 2 * trace_root;
}

class MsFid : public LossWithOptions<FidOptions> {
 public:
  torch::Tensor Compute(const LossInputs& in) override {
    const WeightPair w = RequireWeights(in, "ms_fid");
    if (!(opts().eps >= 0)) throw BadInput(fmt::format("eps={}: expected >= 0", opts().eps));
    const auto mp = MelSpectrogram(w.predicted, opts()), mt = MelSpectrogram(w.target, opts());
    if (mp.size(1) < 2) {
      throw BadInput(fmt::format("frame={}, hop={}: one frame of {} weights; expected at least 2 for a covariance",
                                 opts().frame, opts().hop, w.predicted.size(1)));
    }
    return Frechet(mp, mt, opts().eps).mean();
  }
};

}  // namespace

TB_REGISTER_LOSS(mel_difference, MelDifference, "Mel spectrogram difference", "the merging report, 4.5.12");
TB_REGISTER_LOSS(ms_fid, MsFid, "Mel spectrogram Fréchet distance",
                 "the merging report, 4.5.13; Heusel et al. 2017 (FID)");

}  // namespace tb
