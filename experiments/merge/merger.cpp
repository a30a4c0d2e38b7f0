#include "experiments/merge/merger.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/data/dataset.h"
#include "experiments/losses/loss.h"
#include "experiments/merge/merging.h"
#include "experiments/merge/merger_diagnostics.h"
#include "experiments/protocols/merge.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;
namespace nn = torch::nn;

// ---- options ------------------------------------------------------------------------------

void MergerConfig::Bind(Options& o, const std::string& p) {
  o.Add(p + "tokens", &tokens,
        "report: 26 tokens of 80 weights then 24 of 16 (the report's, cnn2464 only); neuron: one token per output "
        "neuron (its incoming weights and bias)",
        {"report", "neuron"});
  o.Add(p + "d_model", &d_model, "token embedding width (report: 960)");
  o.Add(p + "layers", &layers, "N: pre-norm attention blocks per encoder and in the decoder (report: 4)");
  o.Add(p + "heads", &heads, "attention heads, dividing d_model (report: 4)");
  o.Add(p + "d_ff", &d_ff, "feed-forward hidden width (report: 960)");
  o.Add(p + "neck", &neck, "latent width between the encoders and the decoder (report: 512)");
  o.Add(p + "dropout", &dropout, "dropout after attention and feed-forward (report: 0.07)");
}

void MergerConfig::Check(const std::string& p) const {
  for (const auto& [name, v] : {std::pair{"d_model", d_model}, {"layers", layers}, {"heads", heads}, {"d_ff", d_ff},
                                {"neck", neck}}) {
    if (v < 1 || v > 4096) throw BadInput(fmt::format("{}{}={}: expected 1..4096", p, name, v));
  }
  if (d_model % heads != 0) {
    throw BadInput(fmt::format("{}heads={}: expected a divisor of {}d_model={}", p, heads, p, d_model));
  }
  if (!(dropout >= 0 && dropout < 1)) throw BadInput(fmt::format("{}dropout={}: expected a value in [0, 1)", p, dropout));
}

nlohmann::json MergerConfig::ToJson() const {
  return {{"tokens", tokens}, {"d_model", d_model}, {"layers", layers}, {"heads", heads},
          {"d_ff", d_ff},     {"neck", neck},       {"dropout", dropout}};
}

void MergerTraining::Bind(Options& o, const std::string& p) {
  o.Add(p + "epochs", &epochs, "passes over the training triples (the epoch of lowest validation loss is kept)");
  o.Add(p + "batch_size", &batch_size, "triples per Adam step (report: 36)");
  o.Add(p + "lr", &lr, "Adam learning rate");
  o.Add(p + "clip", &clip, "gradient norm clipping (report: 1; 0: none)");
  o.Add(p + "augment", &augment,
        "N > 0: N copies of every training triple with the hidden neurons permuted (W1, W2 and W3 alike)");
  o.Add(p + "max_triples", &max_triples, "> 0: train on a seeded subsample of this many training triples");
  o.Add("loss", &loss, "the training loss between predicted and target weights (transferbench list losses)");
  o.Add("loss.options", &loss_options, "the loss's options, k=v,k=v (transferbench describe-loss NAME)");
  o.Add(p + "normalize", &normalize, "layer: standardise each layer's weights over the training models; none",
        {"layer", "none"});
  o.Add(p + "probe", &probe, "probe images for losses that run the networks (jacobian_frobenius, fisher, ...)");
  o.Add(p + "diagnose_every", &diagnose_every,
        "log weight histograms, spectra and persistence of the first validation pair every N epochs (and the first "
        "and last; 0: never)");
}

void MergerTraining::Check(const std::string& p) const {
  if (epochs < 1 || epochs > 100000) throw BadInput(fmt::format("{}epochs={}: expected 1..100000", p, epochs));
  if (batch_size < 1) throw BadInput(fmt::format("{}batch_size={}: expected >= 1", p, batch_size));
  if (!(lr > 0 && lr < 1)) throw BadInput(fmt::format("{}lr={}: expected a value in (0, 1)", p, lr));
  if (!(clip >= 0)) throw BadInput(fmt::format("{}clip={}: expected >= 0 (0: no clipping)", p, clip));
  if (augment < 0 || augment > 1000) throw BadInput(fmt::format("{}augment={}: expected 0..1000", p, augment));
  if (max_triples < 0) throw BadInput(fmt::format("{}max_triples={}: expected >= 0 (0: all)", p, max_triples));
  if (probe < 1 || probe > 4096) throw BadInput(fmt::format("{}probe={}: expected 1..4096", p, probe));
  if (diagnose_every < 0) {
    throw BadInput(fmt::format("{}diagnose_every={}: expected >= 0 (0: never)", p, diagnose_every));
  }
  Losses().Find(loss);  // BadInput listing the registered losses
}

nlohmann::json MergerTraining::ToJson() const {
  return {{"epochs", epochs},       {"batch_size", batch_size}, {"lr", lr},           {"clip", clip},
          {"augment", augment},     {"max_triples", max_triples}, {"loss", loss},     {"loss_options", loss_options},
          {"normalize", normalize}, {"probe", probe}};
}

namespace {

// "01+23" → {0, 1, 2, 3}; BadInput naming the text otherwise.
std::vector<int64_t> ParsePairUnion(const std::string& text, const std::string& option) {
  const auto plus = text.find('+');
  std::vector<int64_t> u;
  bool ok = plus != std::string::npos && plus > 0 && plus + 1 < text.size();
  for (size_t i = 0; ok && i < text.size(); ++i) {
    if (i == plus) continue;
    ok = std::isdigit(static_cast<unsigned char>(text[i])) != 0;
    if (ok) u.push_back(text[i] - '0');
  }
  std::sort(u.begin(), u.end());
  ok = ok && std::adjacent_find(u.begin(), u.end()) == u.end();
  if (!ok) {
    throw BadInput(fmt::format("{}={}: '{}': expected class pairs like 01+23 (digits of C1, '+', digits of C2; "
                               "disjoint), separated by ';'", option, "…", text));
  }
  return u;
}

}  // namespace

void MergerSplit::Bind(Options& o, const std::string& p) {
  o.Add(p + "val", &val, "share of the training unions held out for validation (model selection)");
  o.Add(p + "test", &test, "share of the union class sets held out for test (without split.test_pairs)");
  o.Add(p + "seed", &seed, "seed of the hash that splits the union class sets");
  o.Add(p + "test_pairs", &test_pairs,
        "the test pairs, e.g. 01+23;4+56: their unions (and every pair of the same union) are the test split");
}

void MergerSplit::Check(const std::string& p) const {
  if (!(val >= 0 && val < 1)) throw BadInput(fmt::format("{}val={}: expected a value in [0, 1)", p, val));
  if (!(test > 0 && test < 1)) throw BadInput(fmt::format("{}test={}: expected a value in (0, 1)", p, test));
  auto& self = const_cast<MergerSplit&>(*this);
  self.test_unions.clear();
  std::stringstream in(test_pairs);
  std::string item;
  while (std::getline(in, item, ';')) {
    if (item.empty()) continue;
    try {
      self.test_unions.push_back(ParsePairUnion(item, p + "test_pairs"));
    } catch (const BadInput&) {
      throw BadInput(fmt::format("{}test_pairs={}: '{}': expected class pairs like 01+23 (digits of C1, '+', digits of "
                                 "C2, disjoint), separated by ';'", p, test_pairs, item));
    }
  }
  std::sort(self.test_unions.begin(), self.test_unions.end());
  self.test_unions.erase(std::unique(self.test_unions.begin(), self.test_unions.end()), self.test_unions.end());
}

nlohmann::json MergerSplit::ToJson() const {
  nlohmann::json j = {{"val", val}, {"seed", seed}};
  if (test_unions.empty()) {
    j["test"] = test;
  } else {
    j["test_unions"] = test_unions;
  }
  return j;
}

std::string MergerSplit::Of(const std::vector<int64_t>& u) const {
  // A uniform number per union from the SHA-256 of (seed, union): stable when the grid grows.
  auto uniform = [&](const char* salt) {
    const std::string h = JsonHash(nlohmann::json{{"seed", seed}, {"union", u}, {"salt", salt}});
    return static_cast<double>(std::stoull(h.substr(0, 12), nullptr, 16)) / static_cast<double>(1ULL << 48);
  };
  if (test_unions.empty() ? uniform("test") < test : std::binary_search(test_unions.begin(), test_unions.end(), u)) {
    return "test";
  }
  return uniform("val") < val ? "val" : "train";
}

void CheckTestPair(const MergerSplit& split, const std::vector<int64_t>& c1, const std::vector<int64_t>& c2) {
  std::vector<int64_t> u = c1;
  u.insert(u.end(), c2.begin(), c2.end());
  std::sort(u.begin(), u.end());
  const std::string where = split.Of(u);
  if (where != "test") {
    throw BadInput(fmt::format("classes_1={} classes_2={}: their union {} is in the merger's {} split (expected a test "
                               "pair, whose target it never saw: list it in split.test_pairs={}+{})",
                               fmt::join(c1, ","), fmt::join(c2, ","), fmt::join(u, ""), where, fmt::join(c1, ""),
                               fmt::join(c2, "")));
  }
}


// ---- data ---------------------------------------------------------------------------------

torch::Tensor FlatWeights(Classifier& model) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : model.parameters()) parts.push_back(p.detach().reshape({-1}).to(torch::kCPU, torch::kFloat));
  return torch::cat(parts);
}

ModelPtr FromFlat(const ModelSpec& spec, const torch::Tensor& flat, torch::Device device) {
  ModelPtr model = MakeModel(spec);
  torch::NoGradGuard no_grad;
  const torch::Tensor v = flat.detach().reshape({-1}).to(torch::kCPU, torch::kFloat);
  if (v.numel() != CountParameters(*model)) {
    throw BadInput(fmt::format("a weight vector of {} values for {} ({} parameters)", v.numel(), spec.arch,
                               CountParameters(*model)));
  }
  int64_t offset = 0;
  for (auto& p : model->parameters()) {
    p.copy_(v.slice(0, offset, offset + p.numel()).view(p.sizes()));
    offset += p.numel();
  }
  model->to(device);
  model->eval();
  return model;
}

ZooTriples LoadZooTriples(RunStore& store, const ZooGrid& grid, const std::string& sha, const std::string& activation,
                          const std::string& init, int64_t seed, int64_t bin, const MergerSplit& split) {
  ZooTriples t;
  t.spec = ModelSpec{grid.arch, activation, init, 10};
  std::map<std::vector<int64_t>, int64_t> row;  // class set → row of t.models
  std::vector<torch::Tensor> rows;
  const std::vector<ModelRecord> checkpoints = GridCheckpoints(store, grid);
  ModelPtr scratch = MakeModel(t.spec);
  for (const auto& classes : grid.subsets) {
    const auto r = FindGridCheckpoint(checkpoints, sha, classes, activation, init, seed, bin);
    if (!r) continue;
    LoadModel(*scratch, r->path);
    row[classes] = static_cast<int64_t>(rows.size());
    rows.push_back(FlatWeights(*scratch));
    t.model_classes.push_back(classes);
  }
  for (const auto& [u, ui] : row) {
    const std::string where = split.Of(u);
    for (const auto& [c1, ai] : row) {
      if (c1.size() >= u.size() || !std::includes(u.begin(), u.end(), c1.begin(), c1.end())) continue;
      std::vector<int64_t> c2;
      std::set_difference(u.begin(), u.end(), c1.begin(), c1.end(), std::back_inserter(c2));
      const auto b = row.find(c2);
      if (b == row.end()) continue;
      ZooTriple triple{ai, b->second, ui, c1, c2};
      (where == "test" ? t.test : where == "val" ? t.val : t.train).push_back(triple);
    }
  }
  if (t.train.empty() || t.test.empty()) {
    throw BadInput(fmt::format("zoo.grid={}: {} training and {} test triples (W1, W2 → W1 ∪ W2) of {} {} seed {} at bin {} "
                               "in this results directory (expected both non-empty: build the grid, or choose the test "
                               "pairs among its class sets)",
                               grid.name, t.train.size(), t.test.size(), activation, init, seed, bin));
  }
  t.models = torch::stack(rows);
  return t;
}

std::vector<torch::Tensor> Tokenisation(const std::string& tokens, const ModelSpec& spec) {
  ModelPtr model = MakeModel(spec);
  const int64_t p = CountParameters(*model);
  std::vector<torch::Tensor> groups;
  if (tokens == "report") {
    if (p != 2464) {
      throw BadInput(fmt::format("merger.tokens=report: the report's 26 × 80 + 24 × 16 tokens cover cnn2464's 2,464 "
                                 "weights, and {} has {} (expected merger.tokens=neuron)", spec.arch, p));
    }
    groups.push_back(torch::arange(0, 26 * 80, torch::kInt64).view({26, 80}));
    groups.push_back(torch::arange(26 * 80, p, torch::kInt64).view({24, 16}));
    return groups;
  }
  // One token per output neuron: its incoming weights, then its bias.
  const auto params = model->named_parameters();
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor w = params[i].value();
    if (w.dim() < 2 || i + 1 >= params.size() || params[i + 1].value().dim() != 1) {
      throw BadInput(fmt::format("merger.tokens=neuron: {} is not a weight followed by its bias", params[i].key()));
    }
    const int64_t out = w.size(0), fan_in = w.numel() / out;
    torch::Tensor weights = torch::arange(offset, offset + w.numel(), torch::kInt64).view({out, fan_in});
    torch::Tensor bias = torch::arange(offset + w.numel(), offset + w.numel() + out, torch::kInt64).view({out, 1});
    groups.push_back(torch::cat({weights, bias}, 1));
    offset += w.numel() + out;
    ++i;
  }
  return groups;
}

// Index vectors [pool, P] of the weight permutations that permute hidden neurons: applying one
// (gather) to a flat vector gives a network computing the same function.
torch::Tensor NeuronPermutations(const ModelSpec& spec, int64_t pool, uint64_t seed) {
  ModelPtr identity = MakeModel(spec);
  const int64_t p = CountParameters(*identity);
  identity = FromFlat(spec, torch::arange(0, p, torch::kFloat), torch::kCPU);
  std::vector<int64_t> widths;
  // Hidden layers only: the head's outputs are the classes, not permutable.
  for (const auto& w : identity->HiddenLayerNames()) widths.push_back(identity->named_parameters()[w + ".weight"].size(0));
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < pool; ++i) {
    Permutations perms;
    for (size_t l = 0; l < widths.size(); ++l) perms.push_back(PortablePermutation(widths[l], seed + 7919 * i + l));
    out.push_back(FlatWeights(*Permuted(*identity, perms)).round().to(torch::kInt64));
  }
  return torch::stack(out);
}

// ---- the TransformerAE -----------------------------------------------------------------------

namespace {

// Pre-norm block: x + Dropout(MHA(LN(x))), then x + Dropout(FF(LN(x))) (the report's EncoderLayer).
class BlockImpl : public nn::Module {
 public:
  BlockImpl(const MergerConfig& c) : heads_(c.heads) {
    n1 = register_module("norm_1", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
    n2 = register_module("norm_2", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
    q = register_module("q", nn::Linear(c.d_model, c.d_model));
    k = register_module("k", nn::Linear(c.d_model, c.d_model));
    v = register_module("v", nn::Linear(c.d_model, c.d_model));
    o = register_module("out", nn::Linear(c.d_model, c.d_model));
    f1 = register_module("ff_1", nn::Linear(c.d_model, c.d_ff));
    f2 = register_module("ff_2", nn::Linear(c.d_ff, c.d_model));
    drop = register_module("dropout", nn::Dropout(c.dropout));
  }
  torch::Tensor forward(torch::Tensor x) {
    const int64_t b = x.size(0), t = x.size(1), d = x.size(2), dk = d / heads_;
    const torch::Tensor h = n1(x);
    auto split = [&](nn::Linear& l) { return l(h).view({b, t, heads_, dk}).transpose(1, 2); };
    const torch::Tensor qh = split(q), kh = split(k), vh = split(v);
    torch::Tensor scores = torch::softmax(qh.matmul(kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(dk)), -1);
    const torch::Tensor attended = drop(scores).matmul(vh).transpose(1, 2).reshape({b, t, d});
    x = x + drop(o(attended));
    return x + drop(f2(drop(torch::relu(f1(n2(x))))));
  }

 private:
  int64_t heads_;
  nn::LayerNorm n1{nullptr}, n2{nullptr};
  nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr}, f1{nullptr}, f2{nullptr};
  nn::Dropout drop{nullptr};
};
TORCH_MODULE(Block);

// Sinusoidal positions [T, d] (Vaswani et al.; the report's PositionalEncoder).
torch::Tensor Positions(int64_t t, int64_t d) {
  torch::Tensor pe = torch::zeros({t, d});
  const torch::Tensor pos = torch::arange(0, t, torch::kFloat).unsqueeze(1);
  const torch::Tensor div = torch::exp(torch::arange(0, d, 2, torch::kFloat) * (-std::log(10000.0) / d));
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)}, torch::sin(pos * div));
  const int64_t odd = d / 2;
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)},
                torch::cos(pos * div.slice(0, 0, odd)));
  return pe;
}

class StackImpl : public nn::Module {
 public:
  StackImpl(const MergerConfig& c) {
    for (int64_t i = 0; i < c.layers; ++i) blocks.push_back(register_module(fmt::format("block_{}", i), Block(c)));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.d_model})));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& b : blocks) x = b(x);
    return norm(x);
  }

 private:
  std::vector<Block> blocks;
  nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Stack);

}  // namespace

// Two encoders (token embedding per token size, positions, N blocks), the two encodings
// concatenated and flattened into a dense layer with tanh (the neck: the report's "stack"
// fusion), a decoder (neck → token sequence, positions, N blocks) and one linear map per token
// size back to the weights. Inputs and output in weight space; the per-entry standardisation of
// the training set (buffers) is applied inside.
class TransformerAEImpl : public nn::Module {
 public:
  TransformerAEImpl(const MergerConfig& c, std::vector<torch::Tensor> groups, int64_t weight_count) : c_(c) {
    int64_t tokens = 0;
    std::vector<torch::Tensor> flat;
    for (size_t g = 0; g < groups.size(); ++g) {
      counts_.push_back(groups[g].size(0));
      sizes_.push_back(groups[g].size(1));
      tokens += groups[g].size(0);
      flat.push_back(groups[g].reshape({-1}));
      for (const char* side : {"embed_1_", "embed_2_"}) {
        auto& list = side[6] == '1' ? embed_1 : embed_2;
        list.push_back(register_module(fmt::format("{}{}", side, g), nn::Linear(groups[g].size(1), c.d_model)));
      }
      unembed.push_back(register_module(fmt::format("unembed_{}", g), nn::Linear(c.d_model, groups[g].size(1))));
    }
    tokens_ = tokens;
    index_ = register_buffer("index", torch::cat(flat));
    positions_ = register_buffer("positions", Positions(tokens, c.d_model));
    mean_ = register_buffer("mean", torch::zeros({weight_count}));
    scale_ = register_buffer("scale", torch::ones({weight_count}));
    enc_1 = register_module("encoder_1", Stack(c));
    enc_2 = register_module("encoder_2", Stack(c));
    dec = register_module("decoder", Stack(c));
    fuse = register_module("fuse", nn::Linear(2 * c.d_model * tokens, c.neck));
    neck2seq = register_module("neck2seq", nn::Linear(c.neck, c.d_model * tokens));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) {
      if (p.dim() > 1) nn::init::xavier_uniform_(p);  // the report's initialisation
    }
  }

  void SetScaler(const torch::Tensor& mean, const torch::Tensor& scale) {
    torch::NoGradGuard no_grad;
    mean_.copy_(mean);
    scale_.copy_(scale);
  }

  struct Output {
    torch::Tensor weights, neck;
  };

  torch::Tensor Neck(const torch::Tensor& w1, const torch::Tensor& w2) {
    const torch::Tensor z1 = Encode(w1, embed_1, enc_1), z2 = Encode(w2, embed_2, enc_2);
    return torch::tanh(fuse(torch::cat({z1, z2}, 2).reshape({w1.size(0), -1})));
  }

  // Encoder k's encoding of a weight batch, mean-pooled over tokens [B, d_model].
  torch::Tensor Encoding(int k, const torch::Tensor& w) {
    return (k == 1 ? Encode(w, embed_1, enc_1) : Encode(w, embed_2, enc_2)).mean(1);
  }

  Output forward(const torch::Tensor& w1, const torch::Tensor& w2) {
    const int64_t b = w1.size(0);
    const torch::Tensor neck = Neck(w1, w2);
    torch::Tensor x = neck2seq(neck).view({b, tokens_, c_.d_model});
    x = dec(x * std::sqrt(static_cast<double>(c_.d_model)) + positions_);
    std::vector<torch::Tensor> parts;
    int64_t start = 0;
    for (size_t g = 0; g < unembed.size(); ++g) {
      parts.push_back(unembed[g](x.slice(1, start, start + counts_[g])).reshape({b, -1}));
      start += counts_[g];
    }
    const torch::Tensor normalised = torch::zeros({b, mean_.size(0)}, w1.options()).index_copy(1, index_, torch::cat(parts, 1));
    return {normalised * scale_ + mean_, neck};
  }

 private:
  torch::Tensor Encode(const torch::Tensor& w, std::vector<nn::Linear>& embed, Stack& stack) {
    const torch::Tensor x = (w - mean_) / scale_;
    const int64_t b = w.size(0);
    std::vector<torch::Tensor> tokens;
    int64_t start = 0;
    for (size_t g = 0; g < embed.size(); ++g) {
      const int64_t n = counts_[g] * sizes_[g];
      tokens.push_back(embed[g](x.index_select(1, index_.slice(0, start, start + n)).view({b, counts_[g], sizes_[g]})));
      start += n;
    }
    return stack(torch::cat(tokens, 1) * std::sqrt(static_cast<double>(c_.d_model)) + positions_);
  }

  MergerConfig c_;
  std::vector<int64_t> counts_, sizes_;
  int64_t tokens_ = 0;
  torch::Tensor index_, positions_, mean_, scale_;
  std::vector<nn::Linear> embed_1, embed_2, unembed;
  Stack enc_1{nullptr}, enc_2{nullptr}, dec{nullptr};
  nn::Linear fuse{nullptr}, neck2seq{nullptr};
};

std::shared_ptr<torch::nn::Module> MakeMerger(const MergerConfig& config, const ModelSpec& spec) {
  return std::make_shared<TransformerAEImpl>(config, Tokenisation(config.tokens, spec), CountParameters(*MakeModel(spec)));
}

torch::Tensor MergerForward(torch::nn::Module& merger, const torch::Tensor& w1, const torch::Tensor& w2) {
  return dynamic_cast<TransformerAEImpl&>(merger).forward(w1, w2).weights;
}

torch::Tensor TrainedMerger::Predict(const torch::Tensor& w1, const torch::Tensor& w2) const {
  torch::NoGradGuard no_grad;
  model->eval();
  const auto device = model->parameters().front().device();
  return model->forward(w1.to(device), w2.to(device)).weights;
}

nlohmann::json MergerRequest::Spec() const {
  return {{"kind", "transformer_merge"},
          {"merger_version", kMergerVersion},
          {"grid", grid->name},
          {"grid_models", JsonHash(GridModelKey(*grid))},
          {"dataset_sha256", dataset_sha256},
          {"activation", activation},
          {"init", init},
          {"seed", seed},
          {"bin", bin},
          {"split", split.ToJson()},
          {"config", config.ToJson()},
          {"training", training.ToJson()},
          {"targets", targets},
          {"device", device.is_cuda() ? "cuda" : "cpu"},
          {"threads", threads},
          {"blas", blas}};
}

void MergerOptions::Bind(Options& o) {
  config.Bind(o, "merger.");
  training.Bind(o, "merger.");
  split.Bind(o, "split.");
}

void MergerOptions::Check() const {
  config.Check("merger.");
  training.Check("merger.");
  split.Check("split.");
}

ZooTriples MergerOptions::Triples(const MergeZooSource& zoo) const {
  return LoadZooTriples(*zoo.store, *zoo.grid, zoo.dataset_sha256, zoo.activation, zoo.init, zoo.seed, zoo.bin, split);
}

MergerRequest MergerOptions::Request(const MergeZooSource& zoo, torch::Device device, const std::string& targets) const {
  MergerRequest req;
  req.grid = zoo.grid;
  req.dataset_sha256 = zoo.dataset_sha256;
  req.activation = zoo.activation;
  req.init = zoo.init;
  req.seed = zoo.seed;
  req.bin = zoo.bin;
  req.split = split;
  req.config = config;
  req.training = training;
  req.targets = targets;
  req.device = device;
  req.threads = zoo.threads;
  req.blas = zoo.blas;
  req.zoo_dir = zoo.zoo_dir;
  return req;
}

namespace {

// "k=v,k=v" onto a loss's options (BadInput naming the bad item).
void SetLossOptions(Loss& loss, const std::string& text) {
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw BadInput(fmt::format("loss.options={}: '{}': expected k=v,k=v", text, item));
    loss.options().SetText(item.substr(0, eq), item.substr(eq + 1));
  }
}

struct Batch {
  torch::Tensor w1, w2, w3;
};

// The latents of one batch, for the latent losses.
class BatchLatents : public LatentAccess {
 public:
  BatchLatents(TransformerAEImpl& merger, const Batch& batch, torch::Tensor neck, const torch::Tensor& pool, int64_t salt)
      : merger_(merger), batch_(batch), neck_(std::move(neck)), pool_(pool), salt_(salt) {}
  torch::Tensor Neck() override { return neck_; }
  torch::Tensor AugmentedNeck() override {
    const int64_t b = batch_.w1.size(0);
    const torch::Tensor which =
        (torch::arange(b, torch::TensorOptions().dtype(torch::kInt64).device(pool_.device())) * 7919 + salt_)
            .remainder(pool_.size(0));
    const torch::Tensor idx = pool_.index_select(0, which);
    return merger_.Neck(batch_.w1.gather(1, idx), batch_.w2.gather(1, idx));
  }
  torch::Tensor Encode(int k, const torch::Tensor& w) override { return merger_.Encoding(k, w); }
  torch::Tensor Input(int k) override { return k == 1 ? batch_.w1 : batch_.w2; }

 private:
  TransformerAEImpl& merger_;
  const Batch& batch_;
  torch::Tensor neck_, pool_;
  int64_t salt_;
};

}  // namespace

TrainedMerger GetMerger(const MergerRequest& req, const ZooTriples& triples, RunStore& store, RunLogger* log) {
  TrainedMerger m;
  m.hash = JsonHash(req.Spec());
  const std::string path = (fs::path(req.zoo_dir) / ("merger-" + m.hash + ".pt")).string();
  const ModelSpec& spec = triples.spec;
  const int64_t p = triples.models.size(1);
  torch::manual_seed(static_cast<uint64_t>(req.seed));
  m.model = std::make_shared<TransformerAEImpl>(req.config, Tokenisation(req.config.tokens, spec), p);
  m.model->to(req.device);
  if (fs::exists(path)) {
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(path, torch::Device(torch::kCPU));
      m.model->load(archive);
    } catch (const c10::Error& e) {
      throw BadInput(fmt::format("{}: cannot load the merger ({})", path, e.what_without_backtrace()));
    }
    m.model->to(req.device);
    m.model->eval();
    if (auto known = store.GetModel(m.hash)) m.metrics = known->metrics;
    return m;
  }

  const auto t0 = std::chrono::steady_clock::now();
  const auto& tr = req.training;
  auto loss = Losses().Find(tr.loss).make();
  SetLossOptions(*loss, tr.loss_options);
  LossInputs proto;
  DescribeModel(proto, spec);
  {
    // A fixed probe batch for the losses that run the networks: training images of every class.
    const Dataset& ds = LoadDataset(DataSpec{req.grid->dataset, req.grid->data_dir});
    const auto order = PortablePermutation(ds.train.size(), static_cast<uint64_t>(req.seed) + 99);
    const torch::Tensor pick = torch::tensor(std::vector<int64_t>(order.begin(), order.begin() + std::min<int64_t>(tr.probe, ds.train.size())), torch::kInt64);
    proto.probe = ds.train.images.index_select(0, pick).to(req.device);
  }

  // The training and validation triples (a seeded subsample of training when asked), on device.
  std::vector<ZooTriple> train = triples.train, val = triples.val;
  if (tr.max_triples > 0 && static_cast<int64_t>(train.size()) > tr.max_triples) {
    const auto order = PortablePermutation(static_cast<int64_t>(train.size()), static_cast<uint64_t>(req.seed) + 17);
    std::vector<ZooTriple> kept;
    for (int64_t i = 0; i < tr.max_triples; ++i) kept.push_back(train[order[i]]);
    train = kept;
  }
  const torch::Tensor models = triples.models.to(req.device);
  auto indices = [&](const std::vector<ZooTriple>& list, bool shuffle_targets, uint64_t salt) {
    std::vector<int64_t> a, b, u;
    for (const auto& t : list) {
      a.push_back(t.a);
      b.push_back(t.b);
      u.push_back(t.u);
    }
    if (shuffle_targets) {
      // The control: every target moved to another pair (a seeded permutation across the split).
      const auto order = PortablePermutation(static_cast<int64_t>(u.size()), static_cast<uint64_t>(req.seed) + salt);
      std::vector<int64_t> moved;
      for (int64_t i : order) moved.push_back(u[i]);
      u = moved;
    }
    auto t = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64).to(req.device); };
    return std::tuple{t(a), t(b), t(u)};
  };
  const bool shuffled = req.targets == "shuffled";
  const auto [ta, tb_, tu] = indices(train, shuffled, 31);
  const auto [va, vb, vu] = indices(val.empty() ? train : val, shuffled, 37);

  // Per-layer standardisation over the training triples' models.
  if (tr.normalize == "layer") {
    std::set<int64_t> rows;
    for (const auto& t : train) rows.insert({t.a, t.b, t.u});
    const torch::Tensor used = torch::tensor(std::vector<int64_t>(rows.begin(), rows.end()), torch::kInt64);
    const torch::Tensor w = triples.models.index_select(0, used);
    torch::Tensor mean = torch::zeros({p}), scale = torch::ones({p});
    for (size_t l = 0; l + 1 < proto.layer_bounds.size(); ++l) {
      const auto layer = w.slice(1, proto.layer_bounds[l], proto.layer_bounds[l + 1]);
      mean.slice(0, proto.layer_bounds[l], proto.layer_bounds[l + 1]).fill_(layer.mean().item<double>());
      scale.slice(0, proto.layer_bounds[l], proto.layer_bounds[l + 1]).fill_(layer.std().item<double>() + 1e-8);
    }
    m.model->SetScaler(mean.to(req.device), scale.to(req.device));
  }

  // Neuron permutations: augment's copies, and the contrastive loss's second view.
  const torch::Tensor pool = NeuronPermutations(spec, 64, static_cast<uint64_t>(req.seed) + 5).to(req.device);
  int64_t step = 0;
  torch::optim::Adam optimizer(m.model->parameters(), torch::optim::AdamOptions(tr.lr));
  auto compute = [&](const Batch& batch) {
    LossInputs in = proto;
    const auto out = m.model->forward(batch.w1, batch.w2);
    BatchLatents latents(*m.model, batch, out.neck, pool, ++step);
    in.predicted = out.weights;
    in.target = batch.w3;
    in.latent = &latents;
    return std::pair{loss->Compute(in), (out.weights - batch.w3).pow(2).mean()};
  };
  auto evaluate = [&](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& u) {
    torch::NoGradGuard no_grad;
    m.model->eval();
    double total = 0, mse = 0;
    const int64_t n = a.size(0);
    for (int64_t s = 0; s < n; s += 256) {
      const int64_t e = std::min(n, s + 256);
      const Batch batch{models.index_select(0, a.slice(0, s, e)), models.index_select(0, b.slice(0, s, e)),
                        models.index_select(0, u.slice(0, s, e))};
      const auto [l, batch_mse] = compute(batch);
      total += l.item<double>() * (e - s);
      mse += batch_mse.item<double>() * (e - s);
    }
    return std::pair{total / n, mse / n};
  };

  const int64_t copies = 1 + tr.augment, n = ta.size(0) * copies;
  double best = INFINITY;
  int64_t best_epoch = 0;
  std::vector<torch::Tensor> best_state;
  double last_train = 0;
  for (int64_t epoch = 1; epoch <= tr.epochs; ++epoch) {
    m.model->train();
    const auto order = PortablePermutation(n, static_cast<uint64_t>(req.seed) * 1000003 + epoch);
    double sum = 0;
    int64_t steps = 0;
    for (int64_t s = 0; s < n; s += tr.batch_size) {
      const int64_t e = std::min(n, s + tr.batch_size);
      std::vector<int64_t> picks(order.begin() + s, order.begin() + e);
      const torch::Tensor pick = torch::tensor(picks, torch::kInt64).to(req.device);
      const torch::Tensor triple = pick.remainder(ta.size(0)), copy = pick.div(ta.size(0), "floor");
      Batch batch{models.index_select(0, ta.index_select(0, triple)), models.index_select(0, tb_.index_select(0, triple)),
                  models.index_select(0, tu.index_select(0, triple))};
      if (tr.augment > 0) {
        // Copy 0 is the triple itself; copy c > 0 one of the pool's permutations, per sample.
        const torch::Tensor which = (pick * static_cast<int64_t>(2654435761)).remainder(pool.size(0));
        torch::Tensor idx = pool.index_select(0, which);
        const torch::Tensor keep = (copy == 0).unsqueeze(1);
        idx = torch::where(keep, torch::arange(p, idx.options()).unsqueeze(0).expand_as(idx), idx);
        batch.w1 = batch.w1.gather(1, idx);
        batch.w2 = batch.w2.gather(1, idx);
        batch.w3 = batch.w3.gather(1, idx);
      }
      optimizer.zero_grad();
      torch::Tensor l = compute(batch).first;
      if (!l.requires_grad()) {
        throw BadInput(fmt::format("loss={}: gives no gradient (a metric, not a training loss; expected a differentiable "
                                   "loss)", tr.loss));
      }
      l.backward();
      if (tr.clip > 0) nn::utils::clip_grad_norm_(m.model->parameters(), tr.clip);
      optimizer.step();
      sum += l.item<double>();
      ++steps;
    }
    last_train = sum / std::max<int64_t>(1, steps);
    const auto [val_loss, val_mse] = evaluate(va, vb, vu);
    if (log) {
      log->Scalar("merger/train_loss", last_train, epoch);
      log->Scalar("merger/val_loss", val_loss, epoch);
      log->Scalar("merger/val_mse", val_mse, epoch);
      if (tr.diagnose_every > 0 && (epoch == 1 || epoch % tr.diagnose_every == 0 || epoch == tr.epochs)) {
        torch::NoGradGuard no_grad;
        m.model->eval();
        const auto first = [&](const torch::Tensor& index) { return models.index_select(0, index.slice(0, 0, 1)); };
        const torch::Tensor predicted = m.model->forward(first(va), first(vb)).weights[0];
        LogPredictionDiagnostics(log, predicted, first(vu)[0], proto, epoch);
      }
    }
    if (val_loss < best || best_epoch == 0) {
      best = val_loss;
      best_epoch = epoch;
      best_state.clear();
      for (const auto& t : m.model->parameters()) best_state.push_back(t.detach().clone());
    }
  }
  {
    torch::NoGradGuard no_grad;
    auto params = m.model->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_state[i]);
  }
  m.model->eval();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto [test_loss, test_mse] = [&] {
    const auto [a, b, u] = indices(triples.test, false, 0);
    return evaluate(a, b, u);
  }();
  m.metrics = {{"train_loss", last_train},  {"val_loss", best},          {"best_epoch", best_epoch},
               {"test_loss", test_loss},    {"test_mse", test_mse},      {"seconds", seconds},
               {"train_triples", n},        {"val_triples", va.size(0)}, {"test_triples", triples.test.size()},
               {"parameters", CountParameters(*m.model)}};
  fs::create_directories(req.zoo_dir);
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  {
    auto cpu = std::make_shared<TransformerAEImpl>(req.config, Tokenisation(req.config.tokens, spec), p);
    torch::NoGradGuard no_grad;
    auto src = m.model->named_parameters();
    for (auto& item : cpu->named_parameters()) item.value().copy_(src.find(item.key())->to(torch::kCPU));
    auto src_buffers = m.model->named_buffers();
    for (auto& item : cpu->named_buffers()) item.value().copy_(src_buffers.find(item.key())->to(torch::kCPU));
    torch::serialize::OutputArchive archive;
    cpu->save(archive);
    archive.save_to(tmp);
  }
  fs::rename(tmp, path);
  m.trained = true;
  ModelRecord record;
  record.hash = m.hash;
  record.path = path;
  record.spec = req.Spec();
  record.metrics = m.metrics;
  record.train_seconds = seconds;
  store.PutModel(record);
  return m;
}

}  // namespace tb
