#include "experiments/data/idx.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "store/errors.h"

namespace tb {
namespace {

std::vector<uint8_t> ReadAll(const std::string& path) {
  // gzread reads plain files unchanged, so one path serves raw and .gz files.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw BadInput(fmt::format("{}: cannot open IDX file", path));
  std::unique_ptr<gzFile_s, decltype(&gzclose)> guard(f, &gzclose);
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      throw BadInput(fmt::format("{}: corrupt compressed data ({})", path, gzerror(f, &err)));
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  return out;
}

}  // namespace

IdxArray ReadIdx(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadAll(path);
  if (bytes.size() < 4) {
    throw BadInput(fmt::format("{}: {} bytes is too short for an IDX header (need at least 4)",
                               path, bytes.size()));
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    throw BadInput(fmt::format("{}: bad IDX magic number 0x{:02x}{:02x}{:02x}{:02x} (expected 0x0000080N)",
                               path, bytes[0], bytes[1], bytes[2], bytes[3]));
  }
  if (bytes[2] != 0x08) {
    throw BadInput(fmt::format("{}: IDX element type 0x{:02x} not supported (expected 0x08, unsigned byte)",
                               path, bytes[2]));
  }
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > 4) {
    throw BadInput(fmt::format("{}: IDX with {} dimensions (expected 1 to 4)", path, ndim));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() < header) {
    throw BadInput(fmt::format("{}: truncated header ({} bytes, expected {})", path, bytes.size(), header));
  }
  IdxArray out;
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = &bytes[4 + 4 * d];
    const int64_t dim = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3];
    if (dim <= 0) throw BadInput(fmt::format("{}: dimension {} is {} (expected > 0)", path, d, dim));
    out.dims.push_back(dim);
  }
  bool overflow = false;  // four dimensions of 65536 would wrap to 0 and pass the size check
  for (int64_t dim : out.dims) overflow = overflow || __builtin_mul_overflow(count, static_cast<size_t>(dim), &count);
  if (overflow) {
    throw BadInput(fmt::format("{}: the header's dimensions {} need more than 2^64 data bytes (the file has {})", path,
                               fmt::join(out.dims, " x "), bytes.size() - header));
  }
  if (bytes.size() != header + count) {
    throw BadInput(fmt::format("{}: {} data bytes, but the header's dimensions need {} ({})", path,
                               bytes.size() - header, count,
                               bytes.size() < header + count ? "truncated" : "trailing bytes"));
  }
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

void WriteIdx(const std::string& path, const IdxArray& array) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw BadInput(fmt::format("{}: cannot write", tmp));
  const uint8_t magic[4] = {0, 0, 0x08, static_cast<uint8_t>(array.dims.size())};
  std::fwrite(magic, 1, 4, f);
  for (int64_t d : array.dims) {
    const uint8_t be[4] = {static_cast<uint8_t>(d >> 24), static_cast<uint8_t>(d >> 16),
                           static_cast<uint8_t>(d >> 8), static_cast<uint8_t>(d)};
    std::fwrite(be, 1, 4, f);
  }
  std::fwrite(array.data.data(), 1, array.data.size(), f);
  if (std::fclose(f) != 0) throw BadInput(fmt::format("{}: write failed", tmp));
  std::filesystem::rename(tmp, path);
}

}  // namespace tb
