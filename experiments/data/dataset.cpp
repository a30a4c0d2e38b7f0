#include "experiments/data/dataset.h"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include <fmt/format.h>

#include "experiments/data/idx.h"
#include "experiments/data/mnist_json.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

// Finds name or name.gz in dir.
std::string FindIdx(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {name, name + ".gz"}) {
    fs::path p = fs::path(dir) / candidate;
    if (fs::exists(p)) return p.string();
  }
  throw BadInput(fmt::format("{}: no {} or {}.gz (expected an IDX dataset directory)", dir, name, name));
}

Split ToSplit(const IdxArray& images, const IdxArray& labels, const std::string& images_path,
              const std::string& labels_path) {
  if (images.dims.size() != 3 || images.dims[1] != 28 || images.dims[2] != 28) {
    throw BadInput(fmt::format("{}: image dimensions must be N x 28 x 28", images_path));
  }
  if (labels.dims.size() != 1 || labels.dims[0] != images.dims[0]) {
    throw BadInput(fmt::format("{}: {} labels for {} images in {}", labels_path,
                               labels.dims.empty() ? 0 : labels.dims[0], images.dims[0], images_path));
  }
  for (uint8_t l : labels.data) {
    if (l > 9) throw BadInput(fmt::format("{}: label {} out of range 0..9", labels_path, int{l}));
  }
  const int64_t n = images.dims[0];
  Split s;
  s.images = torch::from_blob(const_cast<uint8_t*>(images.data.data()), {n, 1, 28, 28}, torch::kUInt8)
                 .to(torch::kFloat32)
                 .div_(255.0);
  s.labels = torch::from_blob(const_cast<uint8_t*>(labels.data.data()), {n}, torch::kUInt8)
                 .to(torch::kInt64);
  return s;
}

Dataset LoadIdxDirectory(const std::string& name, const std::string& dir) {
  Dataset ds;
  ds.name = name;
  const std::string tri = FindIdx(dir, "train-images-idx3-ubyte");
  const std::string trl = FindIdx(dir, "train-labels-idx1-ubyte");
  const std::string tei = FindIdx(dir, "t10k-images-idx3-ubyte");
  const std::string tel = FindIdx(dir, "t10k-labels-idx1-ubyte");
  ds.train = ToSplit(ReadIdx(tri), ReadIdx(trl), tri, trl);
  ds.test = ToSplit(ReadIdx(tei), ReadIdx(tel), tei, tel);
  ds.files = {tri, trl, tei, tel};
  std::string digests;
  for (const auto& f : ds.files) digests += Sha256File(f);
  ds.sha256 = Sha256Hex(digests);
  return ds;
}

Split Gather(const Split& split, const std::vector<int64_t>& index) {
  auto idx = torch::tensor(index, torch::kInt64);
  return Split{split.images.index_select(0, idx), split.labels.index_select(0, idx)};
}

}  // namespace

std::vector<std::string> DatasetNames() { return {"fashion-mnist", "idx", "mnist"}; }

std::string DataRoot() {
  if (const char* env = std::getenv("TRANSFERBENCH_DATA")) return env;
  return (fs::path(TB_SOURCE_DIR) / "results" / "data").string();
}

const Dataset& LoadDataset(const DataSpec& spec) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, std::string>, Dataset> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto key = std::make_pair(spec.name, spec.dir);
  if (auto it = cache.find(key); it != cache.end()) return it->second;

  Dataset ds;
  if (spec.name == "fashion-mnist") {
    ds = LoadIdxDirectory(spec.name, spec.dir.empty() ? kFashionDir : spec.dir);
  } else if (spec.name == "mnist") {
    const std::string dir = spec.dir.empty() ? EnsureMnistIdx(DataRoot()) : spec.dir;
    ds = LoadIdxDirectory(spec.name, dir);
  } else if (spec.name == "idx") {
    if (spec.dir.empty()) throw BadInput("dataset=idx needs data.dir=DIR (a directory of IDX files)");
    ds = LoadIdxDirectory(spec.name, spec.dir);
  } else {
    throw BadInput(fmt::format("dataset '{}': unknown (registered: fashion-mnist, idx, mnist)", spec.name));
  }
  return cache.emplace(key, std::move(ds)).first->second;
}

Split SelectClasses(const Split& split, const std::vector<int64_t>& classes) {
  auto mask = torch::zeros_like(split.labels, torch::kBool);
  for (int64_t c : classes) mask |= split.labels.eq(c);
  auto idx = mask.nonzero().squeeze(1);
  return Split{split.images.index_select(0, idx), split.labels.index_select(0, idx)};
}

Split ConcatSplits(const std::vector<Split>& parts) {
  std::vector<torch::Tensor> images, labels;
  for (const auto& p : parts) {
    images.push_back(p.images);
    labels.push_back(p.labels);
  }
  return {torch::cat(images), torch::cat(labels)};
}

Split LimitPerClass(const Split& split, int64_t per_class) {
  if (per_class <= 0) return split;
  std::map<int64_t, int64_t> seen;
  std::vector<int64_t> keep;
  auto labels = split.labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < split.size(); ++i) {
    if (seen[labels[i]]++ < per_class) keep.push_back(i);
  }
  return Gather(split, keep);
}

std::vector<int64_t> PortablePermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  std::mt19937_64 gen(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // Modulo has a bias of at most n / 2^64: negligible, and identical everywhere.
    const int64_t j = static_cast<int64_t>(gen() % static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

std::pair<Split, Split> CarveValidation(const Split& split, double fraction, uint64_t seed) {
  if (!(fraction >= 0 && fraction < 1)) {
    throw BadInput(fmt::format("validation fraction {}: expected a value in [0, 1)", fraction));
  }
  std::map<int64_t, std::vector<int64_t>> by_class;
  auto labels = split.labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < split.size(); ++i) by_class[labels[i]].push_back(i);
  std::vector<int64_t> rest, val;
  for (auto& [cls, idx] : by_class) {
    auto perm = PortablePermutation(static_cast<int64_t>(idx.size()), seed + static_cast<uint64_t>(cls));
    const auto n_val = static_cast<size_t>(fraction * static_cast<double>(idx.size()));
    for (size_t k = 0; k < perm.size(); ++k) {
      (k < n_val ? val : rest).push_back(idx[static_cast<size_t>(perm[k])]);
    }
  }
  std::sort(rest.begin(), rest.end());
  std::sort(val.begin(), val.end());
  return {Gather(split, rest), Gather(split, val)};
}

torch::Tensor AsSequence(const torch::Tensor& images) { return images.reshape({-1, 28, 28}); }

}  // namespace tb
