// The sparse autoencoder of the surgery report: encoder in→2c→c with ReLU, a mirrored decoder
// c→2c→in, trained on a model's penultimate features with MSE reconstruction plus an L1
// penalty on the codes.
//
//   tb::SparseAutoencoder sae(/*in=*/128, /*concepts=*/24);
//   std::vector<double> losses = tb::TrainSae(sae, features, tb::SaeOptions{}, /*seed=*/3);
//   torch::Tensor codes = sae->Encode(features);
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace tb {

class SparseAutoencoderImpl : public torch::nn::Module {
 public:
  SparseAutoencoderImpl(int64_t in, int64_t concepts);
  torch::Tensor Encode(const torch::Tensor& x);
  torch::Tensor Decode(const torch::Tensor& z);
  torch::Tensor forward(const torch::Tensor& x) { return Decode(Encode(x)); }
  int64_t concepts() const { return enc2->weight.size(0); }

 private:
  torch::nn::Linear enc1{nullptr}, enc2{nullptr}, dec1{nullptr}, dec2{nullptr};
};
TORCH_MODULE(SparseAutoencoder);

struct SaeOptions {
  double l1 = 0.05;        // the report's sparsity weight
  int64_t epochs = 20;     // not given by the report
  double lr = 1e-3;
  int64_t batch_size = 64;
};

// Trains in place on `features` [n, in]; returns the mean loss of each epoch.
std::vector<double> TrainSae(SparseAutoencoder& sae, const torch::Tensor& features, const SaeOptions& options,
                             uint64_t seed);

// Mean code per class: [classes.size(), c], rows in the order of `classes`.
torch::Tensor ClassCentroids(const torch::Tensor& codes, const torch::Tensor& labels,
                             const std::vector<int64_t>& classes);

}  // namespace tb
