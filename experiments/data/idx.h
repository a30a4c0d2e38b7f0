// Reader and writer for the IDX format of MNIST-style datasets (raw or gzip-compressed).
// The reader checks the magic number, the dimensions and the file's size against them; a
// malformed or truncated file gives one BadInput naming the file and what is wrong.
//
//   tb::IdxArray images = tb::ReadIdx("train-images-idx3-ubyte.gz");   // dims {N, 28, 28}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tb {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // unsigned bytes (type code 0x08), row-major
};

IdxArray ReadIdx(const std::string& path);

// Writes uncompressed IDX with type code 0x08; via a temporary file and a rename, so a
// reader never sees a half-written file.
void WriteIdx(const std::string& path, const IdxArray& array);

}  // namespace tb
