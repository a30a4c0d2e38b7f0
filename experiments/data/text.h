// Character-level text corpora for language modelling, with fixed train / validation / test
// splits, and the windows a language model trains and is evaluated on.
//
//   const tb::TextCorpus& c = tb::LoadTextCorpus({"fortunes", ""});   // cached per process
//   c.vocab();                              // symbols: every code point of the corpus, sorted
//   torch::Tensor w = tb::TextWindows(c.train, 64, 32, seed);   // [64, 33] ids: input + next
//   double bpc = ...;                      // see experiments/train/language_model.h
//
// Registered names:
//   fortunes  the English prose files of Debian's package `fortunes` (kFortunesFiles, from
//             /usr/share/games/fortunes, or data.dir), each cookie (the text between '%' lines)
//             one record; records are split by their index in the concatenation of the files:
//             index mod 10 = 8 → validation, 9 → test, the rest → train; records joined by a
//             newline in each split. The package's version is recorded (dpkg's status file).
//   text      every *.txt file of data.dir, in name order, split the same way with blank-line
//             separated paragraphs as records.
// Every file must be non-empty, valid UTF-8 (BadInput naming the file and the byte offset).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace tb {

struct TextCorpus {
  std::string name;
  std::vector<std::string> files;  // the files read, in order
  std::string package;             // the Debian package with its version ("fortunes 1:1.99.1-7.3"), or empty
  std::string sha256;              // digest over the files' digests, in order
  std::vector<char32_t> alphabet;  // the symbols: code points, sorted; id = index
  torch::Tensor train, validation, test;  // int64 [chars] symbol ids
  int64_t records[3] = {0, 0, 0};         // records in train, validation, test
  int64_t vocab() const { return static_cast<int64_t>(alphabet.size()); }
};

struct TextSpec {
  std::string name = "fortunes";
  std::string dir;  // overrides the corpus's default location
};

// The files of `fortunes` the corpus reads (its English prose; not the ASCII-art files).
const std::vector<std::string>& FortunesFiles();

// Names of the registered corpora, sorted.
std::vector<std::string> TextCorpusNames();
bool IsTextCorpus(const std::string& name);

// Loads (once per process and spec) and returns the corpus. BadInput naming an unknown corpus,
// a missing, empty or non-UTF-8 file.
const TextCorpus& LoadTextCorpus(const TextSpec& spec);

// Decodes UTF-8 (BadInput naming `what` and the byte offset of the first invalid sequence).
std::u32string DecodeUtf8(const std::string& bytes, const std::string& what);

// `count` windows of length + 1 symbols (an input of `length` and its next symbols) at offsets
// drawn by a portable generator from `seed`: [count, length + 1], int64.
torch::Tensor TextWindows(const torch::Tensor& ids, int64_t count, int64_t length, uint64_t seed);
// The split cut into consecutive windows of length + 1 symbols overlapping by one (every symbol
// after the first is predicted once), over its first `max_chars` symbols (0: all): [W, length + 1].
torch::Tensor EvaluationWindows(const torch::Tensor& ids, int64_t length, int64_t max_chars);

}  // namespace tb
