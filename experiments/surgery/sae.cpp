#include "experiments/surgery/sae.h"

#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "store/errors.h"

namespace tb {

SparseAutoencoderImpl::SparseAutoencoderImpl(int64_t in, int64_t concepts) {
  if (concepts < 1) throw BadInput(fmt::format("concepts={}: expected >= 1", concepts));
  enc1 = register_module("enc1", torch::nn::Linear(in, 2 * concepts));
  enc2 = register_module("enc2", torch::nn::Linear(2 * concepts, concepts));
  dec1 = register_module("dec1", torch::nn::Linear(concepts, 2 * concepts));
  dec2 = register_module("dec2", torch::nn::Linear(2 * concepts, in));
}

torch::Tensor SparseAutoencoderImpl::Encode(const torch::Tensor& x) {
  return torch::relu(enc2->forward(torch::relu(enc1->forward(x))));
}

torch::Tensor SparseAutoencoderImpl::Decode(const torch::Tensor& z) {
  return dec2->forward(torch::relu(dec1->forward(z)));
}

std::vector<double> TrainSae(SparseAutoencoder& sae, const torch::Tensor& features, const SaeOptions& options,
                             uint64_t seed) {
  torch::optim::Adam opt(sae->parameters(), torch::optim::AdamOptions(options.lr));
  const int64_t n = features.size(0);
  std::vector<double> losses;
  sae->train();
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    auto perm = torch::tensor(PortablePermutation(n, seed * 31337ULL + static_cast<uint64_t>(epoch)), torch::kInt64)
                    .to(features.device());
    double sum = 0;
    for (int64_t i = 0; i < n; i += options.batch_size) {
      auto x = features.index_select(0, perm.slice(0, i, std::min(i + options.batch_size, n)));
      opt.zero_grad();
      auto z = sae->Encode(x);
      auto loss = torch::mse_loss(sae->Decode(z), x) + options.l1 * z.abs().mean();
      loss.backward();
      opt.step();
      sum += loss.item<double>() * static_cast<double>(x.size(0));
    }
    losses.push_back(sum / static_cast<double>(n));
  }
  sae->eval();
  return losses;
}

torch::Tensor ClassCentroids(const torch::Tensor& codes, const torch::Tensor& labels,
                             const std::vector<int64_t>& classes) {
  std::vector<torch::Tensor> rows;
  for (int64_t c : classes) {
    auto mask = labels.eq(c);
    if (mask.sum().item<int64_t>() == 0) throw BadInput(fmt::format("no samples of class {} for its centroid", c));
    rows.push_back(codes.index({mask}).mean(0));
  }
  return torch::stack(rows);
}

}  // namespace tb
