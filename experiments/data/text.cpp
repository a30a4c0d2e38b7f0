#include "experiments/data/text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFortunesDir = "/usr/share/games/fortunes";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BadInput(fmt::format("{}: cannot read the file (expected a UTF-8 text file)", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The installed version of a Debian package, from dpkg's status file ("" when not installed).
std::string DebianVersion(const std::string& package) {
  std::ifstream in("/var/lib/dpkg/status");
  std::string line;
  bool in_package = false;
  while (std::getline(in, line)) {
    if (line.rfind("Package: ", 0) == 0) in_package = line.substr(9) == package;
    if (in_package && line.rfind("Version: ", 0) == 0) return line.substr(9);
  }
  return "";
}

// Records of a fortune file: the texts between lines holding only '%'.
std::vector<std::u32string> FortuneRecords(const std::u32string& text) {
  std::vector<std::u32string> records;
  std::u32string current;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(U'\n', start);
    const size_t stop = end == std::u32string::npos ? text.size() : end + 1;
    const std::u32string line = text.substr(start, stop - start);
    if (line == U"%\n" || line == U"%") {
      if (!current.empty()) records.push_back(current);
      current.clear();
    } else {
      current += line;
    }
    start = stop;
  }
  if (!current.empty()) records.push_back(current);
  return records;
}

// Records of a plain text file: paragraphs separated by blank lines.
std::vector<std::u32string> ParagraphRecords(const std::u32string& text) {
  std::vector<std::u32string> records;
  std::u32string current;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(U'\n', start);
    const size_t stop = end == std::u32string::npos ? text.size() : end + 1;
    const std::u32string line = text.substr(start, stop - start);
    const bool blank = line.find_first_not_of(U" \t\r\n") == std::u32string::npos;
    if (blank) {
      if (!current.empty()) records.push_back(current);
      current.clear();
    } else {
      current += line;
    }
    start = stop;
  }
  if (!current.empty()) records.push_back(current);
  return records;
}

TextCorpus Build(const std::string& name, const std::vector<std::string>& files, bool fortunes) {
  TextCorpus c;
  c.name = name;
  c.files = files;
  std::string digests;
  std::vector<std::u32string> records;
  for (const auto& path : files) {
    const std::string bytes = ReadFile(path);
    if (bytes.empty()) throw BadInput(fmt::format("{}: empty file (expected UTF-8 text)", path));
    digests += Sha256File(path);
    const std::u32string text = DecodeUtf8(bytes, path);
    auto r = fortunes ? FortuneRecords(text) : ParagraphRecords(text);
    if (r.empty()) throw BadInput(fmt::format("{}: no text in the file (expected UTF-8 text)", path));
    records.insert(records.end(), r.begin(), r.end());
  }
  c.sha256 = Sha256Hex(digests);
  std::set<char32_t> symbols;
  for (const auto& r : records) symbols.insert(r.begin(), r.end());
  symbols.insert(U'\n');  // the separator of records
  c.alphabet.assign(symbols.begin(), symbols.end());
  std::map<char32_t, int64_t> id;
  for (size_t i = 0; i < c.alphabet.size(); ++i) id[c.alphabet[i]] = static_cast<int64_t>(i);
  std::vector<int64_t> parts[3];
  for (size_t i = 0; i < records.size(); ++i) {
    const int split = i % 10 == 8 ? 1 : i % 10 == 9 ? 2 : 0;
    auto& out = parts[split];
    if (!out.empty()) out.push_back(id.at(U'\n'));
    for (char32_t ch : records[i]) out.push_back(id.at(ch));
    ++c.records[split];
  }
  for (int s = 0; s < 3; ++s) {
    if (parts[s].size() < 2) {
      throw BadInput(fmt::format("corpus {}: too little text for a {} split ({} records; expected at least 10)", name,
                                 s == 0 ? "train" : s == 1 ? "validation" : "test", records.size()));
    }
  }
  auto tensor = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64); };
  c.train = tensor(parts[0]);
  c.validation = tensor(parts[1]);
  c.test = tensor(parts[2]);
  return c;
}

}  // namespace

const std::vector<std::string>& FortunesFiles() {
  static const std::vector<std::string> files = {"computers", "education", "food",     "humorists", "law",
                                                 "literature", "love",     "medicine", "people",    "platitudes",
                                                 "politics",   "science",  "wisdom",   "work"};
  return files;
}

std::vector<std::string> TextCorpusNames() { return {"fortunes", "text"}; }

bool IsTextCorpus(const std::string& name) {
  const auto names = TextCorpusNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::u32string DecodeUtf8(const std::string& bytes, const std::string& what) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    int len = 0;
    char32_t cp = 0, min = 0;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, min = 0x10000;
    } else {
      throw BadInput(fmt::format("{}: not UTF-8 (byte 0x{:02x} at offset {} starts no character; expected UTF-8 text)",
                                 what, b, i));
    }
    if (i + static_cast<size_t>(len) > n) {
      throw BadInput(fmt::format("{}: not UTF-8 (a character cut off at offset {}; expected UTF-8 text)", what, i));
    }
    for (int k = 1; k < len; ++k) {
      const unsigned char c = p[i + static_cast<size_t>(k)];
      if ((c & 0xC0) != 0x80) {
        throw BadInput(fmt::format("{}: not UTF-8 (byte 0x{:02x} at offset {} continues no character; expected UTF-8 "
                                   "text)",
                                   what, c, i + static_cast<size_t>(k)));
      }
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      throw BadInput(fmt::format("{}: not UTF-8 (an invalid character U+{:04X} at offset {}; expected UTF-8 text)", what,
                                 static_cast<uint32_t>(cp), i));
    }
    out.push_back(cp);
    i += static_cast<size_t>(len);
  }
  return out;
}

const TextCorpus& LoadTextCorpus(const TextSpec& spec) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, std::string>, TextCorpus> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(spec.name, spec.dir);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  TextCorpus c;
  if (spec.name == "fortunes") {
    const std::string dir = spec.dir.empty() ? kFortunesDir : spec.dir;
    std::vector<std::string> files;
    for (const auto& f : FortunesFiles()) {
      const std::string path = (fs::path(dir) / f).string();
      if (!fs::exists(path)) {
        throw BadInput(fmt::format("{}: missing (the corpus fortunes reads Debian's package fortunes: run scripts/setup, "
                                   "or give data.dir)",
                                   path));
      }
      files.push_back(path);
    }
    c = Build(spec.name, files, /*fortunes=*/true);
    if (spec.dir.empty()) {
      const std::string version = DebianVersion("fortunes");
      if (!version.empty()) c.package = "fortunes " + version;
    }
  } else if (spec.name == "text") {
    if (spec.dir.empty()) throw BadInput("dataset=text needs data.dir=DIR (a directory of *.txt files)");
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(spec.dir, ec)) {
      if (e.path().extension() == ".txt") files.push_back(e.path().string());
    }
    if (ec) throw BadInput(fmt::format("data.dir={}: {} (expected a directory of *.txt files)", spec.dir, ec.message()));
    std::sort(files.begin(), files.end());
    if (files.empty()) throw BadInput(fmt::format("data.dir={}: no *.txt file (expected a directory of UTF-8 text)", spec.dir));
    c = Build(spec.name, files, /*fortunes=*/false);
  } else {
    throw BadInput(fmt::format("text corpus '{}': unknown (registered: fortunes, text)", spec.name));
  }
  return cache.emplace(key, std::move(c)).first->second;
}

torch::Tensor TextWindows(const torch::Tensor& ids, int64_t count, int64_t length, uint64_t seed) {
  const int64_t n = ids.size(0);
  if (length < 1 || n < length + 1) {
    throw BadInput(fmt::format("text.seq_len={}: expected 1..{} (the split holds {} symbols)", length, n - 1, n));
  }
  std::mt19937_64 gen(seed);
  const auto span = static_cast<uint64_t>(n - length);  // offsets 0 .. n - length - 1
  std::vector<int64_t> starts(static_cast<size_t>(count));
  for (auto& s : starts) s = static_cast<int64_t>(gen() % span);
  const auto offsets = torch::tensor(starts, torch::kInt64).unsqueeze(1) + torch::arange(length + 1).unsqueeze(0);
  return ids.index({offsets.reshape({-1})}).reshape({count, length + 1});
}

torch::Tensor EvaluationWindows(const torch::Tensor& ids, int64_t length, int64_t max_chars) {
  const int64_t n = max_chars > 0 ? std::min(max_chars, ids.size(0)) : ids.size(0);
  const int64_t windows = (n - 1) / length;
  if (length < 1 || windows < 1) {
    throw BadInput(fmt::format("text.seq_len={}: expected 1..{} (the evaluated text holds {} symbols)", length, n - 1, n));
  }
  const auto offsets = torch::arange(windows).unsqueeze(1) * length + torch::arange(length + 1).unsqueeze(0);
  return ids.index({offsets.reshape({-1})}).reshape({windows, length + 1});
}

}  // namespace tb
