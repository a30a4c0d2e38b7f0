// SHA-256 helpers (OpenSSL): data files, configs, zoo keys and artifacts are identified by
// their digest.
//
//   std::string h = tb::Sha256Hex(canonical_json);   // 64 lowercase hex digits
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tb {

std::string Sha256Hex(std::string_view bytes);

// Digest of a file's bytes; throws BadInput naming the file if it cannot be read.
std::string Sha256File(const std::string& path);

// Digest of a JSON value in canonical form (keys sorted, no whitespace), so that two configs
// that differ only in key order hash the same.
std::string JsonHash(const nlohmann::json& value);

// A random (version 4) UUID in its 36-character text form.
std::string NewUuid();

}  // namespace tb
