#include "store/hash.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include "store/errors.h"

namespace tb {
namespace {

struct DigestContext {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  DigestContext() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("OpenSSL: cannot initialise SHA-256");
    }
  }
  void Update(const void* data, size_t n) { EVP_DigestUpdate(ctx.get(), data, n); }
  std::string HexDigest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx.get(), out.data(), &n);
    std::string hex;
    hex.reserve(2 * n);
    for (unsigned int i = 0; i < n; ++i) hex += fmt::format("{:02x}", out[i]);
    return hex;
  }
};

}  // namespace

std::string Sha256Hex(std::string_view bytes) {
  DigestContext d;
  d.Update(bytes.data(), bytes.size());
  return d.HexDigest();
}

std::string Sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BadInput(fmt::format("{}: cannot open file for hashing", path));
  DigestContext d;
  std::array<char, 1 << 16> buf{};
  while (in) {
    in.read(buf.data(), buf.size());
    d.Update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return d.HexDigest();
}

std::string JsonHash(const nlohmann::json& value) { return Sha256Hex(value.dump()); }

std::string NewUuid() {
  std::array<unsigned char, 16> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    throw std::runtime_error("OpenSSL: no random bytes for a run id");
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string s;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += fmt::format("{:02x}", b[i]);
  }
  return s;
}

}  // namespace tb
