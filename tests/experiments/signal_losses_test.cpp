// Known answers of the signal losses (experiments/losses/signal_losses.cpp): mel_difference and
// ms_fid, and their autograd gradients against central finite differences.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "experiments/losses/loss.h"
#include "store/errors.h"

namespace tb {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;

// Small spectrograms for short test vectors.
const Settings kSmall = {{"frame", "64"}, {"hop", "16"}, {"mels", "8"}};

std::unique_ptr<Loss> Make(const std::string& name, const Settings& set) {
  auto loss = Losses().Find(name).make();
  for (const auto& [k, v] : set) loss->options().SetText(k, v);
  return loss;
}

double Value(const std::string& name, const torch::Tensor& p, const torch::Tensor& t, const Settings& set = kSmall) {
  LossInputs in;
  in.predicted = p;
  in.target = t;
  return Make(name, set)->Compute(in).item<double>();
}

TEST(SignalLossTest, ZeroForIdenticalInputsSymmetricAndFiniteGradientAtZero) {
  torch::manual_seed(0);
  const auto a = torch::randn({2, 300}, torch::kDouble), b = torch::randn({2, 300}, torch::kDouble);
  for (const std::string name : {"mel_difference", "ms_fid"}) {
    EXPECT_NEAR(Value(name, a, a.clone()), 0.0, 1e-8) << name;
    const double ab = Value(name, a, b), ba = Value(name, b, a);
    EXPECT_GT(ab, 0.1) << name;
    EXPECT_NEAR(ab, ba, 1e-8 * ab) << name;
    // At p = t the norm's subgradient 0, not NaN.
    auto p = a.clone().requires_grad_(true);
    LossInputs in;
    in.predicted = p;
    in.target = a;
    Make(name, kSmall)->Compute(in).backward();
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>()) << name;
  }
}

// The HTK filter bank, written out again: weight of rFFT bin k in filter m.
double Filter(int64_t k, int64_t m, int64_t frame, int64_t mels, double rate) {
  const double top = 2595.0 * std::log10(1.0 + rate / 2 / 700.0);
  const auto edge = [&](int64_t i) { return 700.0 * (std::pow(10.0, top * i / (mels + 1) / 2595.0) - 1.0); };
  const double f = k * rate / frame;
  return std::max(0.0, std::min((f - edge(m)) / (edge(m + 1) - edge(m)), (edge(m + 2) - f) / (edge(m + 2) - edge(m + 1))));
}

TEST(SignalLossTest, CosinePutsItsEnergyInTheFiltersAroundItsFrequency) {
  const int64_t n = 512, frame = 64, hop = 32, mels = 8, k0 = 10;  // bin 10: 2,500 Hz at 16 kHz
  const double pi = std::acos(-1.0);
  const auto i = torch::arange(n, torch::kDouble);
  const auto cosine = torch::cos(2 * pi * k0 * i / frame).unsqueeze(0), sine = torch::sin(2 * pi * k0 * i / frame).unsqueeze(0);
  const Settings linear = {{"frame", "64"}, {"hop", "32"}, {"mels", "8"}, {"log", "false"}};
  // Hann-windowed, a bin-centred unit cosine has power N²/16 at bin k0 and N²/64 at k0 ± 1 in
  // every frame, whatever its phase; so ||M||_F = sqrt(T Σ_m mel_m²) against silence.
  const int64_t frames = 1 + (n - frame) / hop;
  double sum = 0;
  int64_t loudest = -1;
  double loudest_power = 0;
  for (int64_t m = 0; m < mels; ++m) {
    const double power = frame * frame / 16.0 * Filter(k0, m, frame, mels, 16000) +
                         frame * frame / 64.0 * (Filter(k0 - 1, m, frame, mels, 16000) + Filter(k0 + 1, m, frame, mels, 16000));
    sum += power * power;
    if (power > loudest_power) loudest_power = power, loudest = m;
  }
  EXPECT_NEAR(Value("mel_difference", cosine, torch::zeros_like(cosine), linear), std::sqrt(frames * sum), 1e-8 * std::sqrt(sum));
  // The loudest filter is the one whose peak is nearest 2,500 Hz: filter m peaks at (m + 1)/9 of
  // mel(8,000 Hz) = 2,840 mel; filter 4 at 2,139 Hz, filter 5 at 3,056 Hz.
  EXPECT_EQ(loudest, 4);
  // A sine of the same frequency has the same power spectrum; one 12 bins up does not.
  EXPECT_NEAR(Value("mel_difference", cosine, sine, linear), 0.0, 1e-8 * std::sqrt(sum));
  EXPECT_NEAR(Value("mel_difference", cosine, sine, {{"frame", "64"}, {"hop", "32"}, {"mels", "8"}}), 0.0, 1e-6);
  const auto higher = torch::cos(2 * pi * (k0 + 12) * i / frame).unsqueeze(0);
  EXPECT_GT(Value("mel_difference", cosine, higher, linear), 0.5 * std::sqrt(frames * sum));
}

TEST(SignalLossTest, MsFidOfEqualStatisticsIsZeroAndOfAShiftedMeanIsItsSquare) {
  torch::manual_seed(1);
  // Non-overlapping frames: permuting whole frames permutes the spectrogram's rows, so the mean and
  // covariance over frames, and with them the Fréchet distance, do not change.
  const Settings blocks = {{"frame", "32"}, {"hop", "32"}, {"mels", "4"}};
  const auto x = torch::randn({1, 32 * 12}, torch::kDouble);
  const auto permuted = x.view({12, 32}).index_select(0, torch::tensor({3, 7, 0, 11, 5, 1, 9, 2, 10, 4, 8, 6})).reshape({1, -1});
  EXPECT_GT(Value("mel_difference", x, permuted, blocks), 1.0);
  EXPECT_NEAR(Value("ms_fid", x, permuted, blocks), 0.0, 1e-8);
  // Scaling by c multiplies every power by c²: the log-mel frames shift by 2 ln c in every filter
  // and the covariance stays, so the distance is ||Δμ||² = mels (2 ln c)².
  const Settings unfloored = {{"frame", "64"}, {"hop", "16"}, {"mels", "8"}, {"floor", "0"}};
  const auto y = torch::randn({1, 400}, torch::kDouble);
  EXPECT_NEAR(Value("ms_fid", 3.0 * y, y, unfloored), 8 * std::pow(2 * std::log(3.0), 2), 1e-6);
  // A batch is the mean of its rows.
  EXPECT_NEAR(Value("ms_fid", torch::cat({3.0 * y, y}), torch::cat({y, y}), unfloored), 4 * std::pow(2 * std::log(3.0), 2),
              1e-6);
}

TEST(SignalLossTest, RefusesBadOptionsAndInputs) {
  const auto w = torch::randn({2, 200}, torch::kDouble);
  const std::vector<Settings> bad = {{{"frame", "1"}}, {{"frame", "201"}}, {{"hop", "0"}},          {{"mels", "0"}},
                                     {{"sample_rate", "0"}}, {{"floor", "-1"}}};
  for (const std::string name : {"mel_difference", "ms_fid"}) {
    for (const auto& set : bad) EXPECT_THROW(Value(name, w, w, set), BadInput) << name << " " << set[0].first;
    LossInputs in;
    in.predicted = w;
    EXPECT_THROW(Make(name, {})->Compute(in), BadInput) << name;  // no target
  }
  EXPECT_THROW(Value("ms_fid", w, w, {{"frame", "200"}}), BadInput);  // one frame: no covariance
  EXPECT_THROW(Value("ms_fid", w, w, {{"frame", "64"}, {"eps", "-1"}}), BadInput);
  EXPECT_THROW(Make("mel_difference", {})->options().SetText("window", "hann"), BadInput);  // unknown key
}

TEST(SignalLossTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(2);
  const Settings set = {{"frame", "16"}, {"hop", "8"}, {"mels", "4"}};  // P = 96: 11 frames, 9 bins
  const auto t = torch::randn({2, 96}, torch::kDouble);
  const auto p0 = t + 0.5 * torch::randn({2, 96}, torch::kDouble);
  for (const std::string name : {"mel_difference", "ms_fid"}) {
    auto loss = Make(name, set);
    auto p = p0.clone().requires_grad_(true);
    LossInputs in;
    in.predicted = p;
    in.target = t;
    loss->Compute(in).backward();
    const auto grad = p.grad().clone();
    const double h = 1e-6;
    for (int64_t i = 0; i < p0.numel(); i += 7) {
      auto plus = p0.clone(), minus = p0.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      LossInputs a = in, b = in;
      a.predicted = plus;
      b.predicted = minus;
      const double fd = (loss->Compute(a).item<double>() - loss->Compute(b).item<double>()) / (2 * h);
      EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << name << " entry " << i;
    }
  }
}

}  // namespace
}  // namespace tb
