// The KAN refinement of the learned merger's prediction (refiner.h): the KAN layer and its MLP
// control, the (predicted, fine-tuned) pairs, and the per-layer refiner's training and cache.
#include "experiments/merge/refiner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>

#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "experiments/train/trainer.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;
namespace nn = torch::nn;

// ---- the KAN and its control ------------------------------------------------------------------

torch::Tensor BSplineBasis(const torch::Tensor& x, const SplineGrid& g) {
  const double h = 2 * g.range / static_cast<double>(g.intervals);
  // Knots t_0 … t_{G+2k}: the grid's G+1 points and k more on each side.
  const torch::Tensor knots =
      torch::arange(-g.order, g.intervals + g.order + 1, x.options()) * h - g.range;
  const torch::Tensor xe = x.unsqueeze(-1);
  const int64_t n = knots.size(0);
  // Order 0: the indicator of [t_m, t_{m+1}) (constant in x: no gradient of its own).
  torch::Tensor b = torch::logical_and(xe >= knots.slice(0, 0, n - 1), xe < knots.slice(0, 1, n)).to(x.scalar_type());
  for (int64_t p = 1; p <= g.order; ++p) {
    const int64_t len = b.size(-1);  // B_{m,p-1}, m = 0 … len-1; B_{m,p} needs m and m+1
    const torch::Tensor t_m = knots.slice(0, 0, len - 1), t_m1 = knots.slice(0, 1, len),
                        t_mp = knots.slice(0, p, p + len - 1), t_mp1 = knots.slice(0, p + 1, p + len);
    b = (xe - t_m) / (t_mp - t_m) * b.narrow(-1, 0, len - 1) + (t_mp1 - xe) / (t_mp1 - t_m1) * b.narrow(-1, 1, len - 1);
  }
  return b;
}

KanLayerImpl::KanLayerImpl(int64_t in, int64_t out, const SplineGrid& grid) : grid_(grid) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(in));
  const double noise = 0.25 / static_cast<double>(grid.intervals);
  base_weight = register_parameter("base_weight", (torch::rand({out, in}) * 2 - 1) * scale);
  spline_weight = register_parameter("spline_weight", torch::full({out, in}, scale));
  coefficients = register_parameter("coefficients", (torch::rand({out, in, grid.Bases()}) * 2 - 1) * noise);
}

torch::Tensor KanLayerImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), in = x.size(1), out = base_weight.size(0);
  const torch::Tensor basis = BSplineBasis(x, grid_).reshape({b, in * grid_.Bases()});
  const torch::Tensor c = (coefficients * spline_weight.unsqueeze(-1)).reshape({out, in * grid_.Bases()});
  return torch::silu(x).matmul(base_weight.t()) + basis.matmul(c.t());
}

KanImpl::KanImpl(const std::vector<int64_t>& widths, const SplineGrid& grid) {
  if (widths.size() < 2) throw BadInput(fmt::format("a KAN of {} widths: expected at least [in, out]", widths.size()));
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    layers_.push_back(register_module("layer_" + std::to_string(i), KanLayer(widths[i], widths[i + 1], grid)));
  }
}

torch::Tensor KanImpl::forward(torch::Tensor x) {
  for (auto& layer : layers_) x = layer(x);
  return x;
}

RefineMlpImpl::RefineMlpImpl(int64_t in, int64_t hidden, int64_t out) {
  first_ = register_module("first", nn::Linear(in, hidden));
  second_ = register_module("second", nn::Linear(hidden, out));
}

torch::Tensor RefineMlpImpl::forward(const torch::Tensor& x) { return second_(torch::silu(first_(x))); }

int64_t KanParameterCount(const std::vector<int64_t>& widths, const SplineGrid& grid) {
  int64_t n = 0;
  for (size_t i = 0; i + 1 < widths.size(); ++i) n += widths[i] * widths[i + 1] * (2 + grid.Bases());
  return n;
}

int64_t MlpParameterCount(int64_t in, int64_t hidden, int64_t out) { return in * hidden + hidden + hidden * out + out; }

int64_t MatchedMlpHidden(int64_t in, int64_t out, int64_t target) {
  // The count grows by in + out + 1 per hidden unit: the nearest width, at least 1.
  const double exact = static_cast<double>(target - out) / static_cast<double>(in + out + 1);
  int64_t best = 1;
  for (int64_t h = std::max<int64_t>(1, static_cast<int64_t>(std::floor(exact)) - 1); h <= static_cast<int64_t>(exact) + 2; ++h) {
    if (std::llabs(MlpParameterCount(in, h, out) - target) < std::llabs(MlpParameterCount(in, best, out) - target)) best = h;
  }
  return best;
}

// ---- options ------------------------------------------------------------------------------------

void RefinerOptions::Bind(Options& o, const std::string& p) {
  o.Add(p + "pairs", &pairs, "training triples whose merger prediction is fine-tuned into a (P, F) pair (a seeded sample)");
  o.Add(p + "steps", &steps, "Adam steps of each pair's fine-tuning (batch 64, the union's training images)");
  o.Add(p + "finetune_lr", &finetune_lr, "Adam learning rate of the pairs' fine-tuning");
  o.Add(p + "val", &val, "share of the pairs that validates the refiner (the epoch of lowest validation loss is kept)");
  o.Add(p + "hidden", &hidden, "the KAN's hidden width, [d, hidden, d] per CNN layer (the MLP's is matched in parameters)");
  o.Add(p + "grid", &grid, "B-spline grid intervals G of every KAN edge");
  o.Add(p + "order", &order, "B-spline order k of every KAN edge");
  o.Add(p + "range", &range, "the spline grid spans [-range, range] of the standardised tokens");
  o.Add(p + "lr", &lr, "Adam learning rate of the refiner (full batch over each layer's tokens)");
  o.Add(p + "epochs", &epochs, "full-batch Adam steps of the refiner");
}

void RefinerOptions::Check(const std::string& p) const {
  auto in = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) throw BadInput(fmt::format("{}{}={}: expected {}..{}", p, name, v, lo, hi));
  };
  in("pairs", pairs, 2, 100000);
  in("steps", steps, 1, 100000);
  in("hidden", hidden, 1, 4096);
  in("grid", grid, 1, 1000);
  in("order", order, 1, 5);
  in("epochs", epochs, 1, 100000);
  auto open = [&](const char* name, double v, double lo, double hi) {
    if (!(v > lo && v < hi)) throw BadInput(fmt::format("{}{}={}: expected a value in ({}, {})", p, name, v, lo, hi));
  };
  open("finetune_lr", finetune_lr, 0, 1);
  open("lr", lr, 0, 1);
  open("val", val, 0, 1);
  open("range", range, 0, 1000);
}

namespace {

constexpr int64_t kFinetuneBatch = 64;  // the protocol's finetune.batch_size

nlohmann::json PairsSpec(const MergerRequest& req, const TrainedMerger& merger, const RefinerOptions& o) {
  return {{"kind", "refine_pairs"}, {"refiner_version", kRefinerVersion}, {"merger", merger.hash},
          {"pairs", o.pairs},       {"steps", o.steps},                   {"finetune_lr", o.finetune_lr},
          {"batch_size", kFinetuneBatch}, {"seed", req.seed}};
}

std::string Atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  write(tmp);
  fs::rename(tmp, path);  // concurrent readers see no file or the whole one
  return path;
}

// How many of `n` pairs validate: the share, at least one, leaving at least one to train on.
int64_t ValCount(int64_t n, double share) {
  const int64_t v = std::max<int64_t>(1, std::llround(share * static_cast<double>(n)));
  return std::min(v, n - 1);
}

}  // namespace

// ---- the pairs ------------------------------------------------------------------------------------

RefinePairs GetRefinePairs(const MergerRequest& req, const TrainedMerger& merger, const ZooTriples& triples,
                           const RefinerOptions& o, RunLogger* log) {
  RefinePairs r;
  r.hash = JsonHash(PairsSpec(req, merger, o));
  const std::string path = (fs::path(req.zoo_dir) / ("refine-pairs-" + r.hash + ".pt")).string();
  const int64_t n = std::min<int64_t>(o.pairs, static_cast<int64_t>(triples.train.size()));
  if (n < 2) {
    throw BadInput(fmt::format("refine.pairs={}: the merger's training split has {} triple(s) (expected at least 2: one "
                               "to train the refiner on, one to validate it)", o.pairs, triples.train.size()));
  }
  r.val_count = ValCount(n, o.val);
  if (fs::exists(path)) {
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(path, torch::Device(torch::kCPU));
      archive.read("predicted", r.predicted);
      archive.read("finetuned", r.finetuned);
    } catch (const c10::Error& e) {
      throw BadInput(fmt::format("{}: cannot load the refinement pairs ({})", path, e.what_without_backtrace()));
    }
    return r;
  }

  const auto t0 = std::chrono::steady_clock::now();
  const auto order = PortablePermutation(static_cast<int64_t>(triples.train.size()), static_cast<uint64_t>(req.seed) + 23);
  std::vector<int64_t> a, b, rows;
  for (int64_t i = 0; i < n; ++i) {
    const ZooTriple& t = triples.train[order[i]];
    a.push_back(t.a);
    b.push_back(t.b);
    rows.push_back(t.u);
  }
  const torch::Tensor predicted =
      merger.Predict(triples.models.index_select(0, torch::tensor(a, torch::kInt64)),
                     triples.models.index_select(0, torch::tensor(b, torch::kInt64))).to(torch::kCPU, torch::kFloat);
  const Dataset& ds = LoadDataset(DataSpec{req.grid->dataset, req.grid->data_dir});
  std::vector<torch::Tensor> finetuned;
  for (int64_t i = 0; i < n; ++i) {
    // The images the union model was trained on (and the protocol fine-tunes on): the grid's.
    const Split fit = ZooTrainingData(ds, triples.model_classes[rows[i]], req.grid->train_per_class,
                                      req.grid->train.val_fraction, static_cast<uint64_t>(req.seed)).first;
    ModelPtr model = FromFlat(triples.spec, predicted[i], req.device);
    model->train();
    torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(o.finetune_lr));
    const torch::Tensor images = fit.images.to(req.device), labels = fit.labels.to(req.device);
    const int64_t m = fit.size();
    torch::Tensor perm;
    for (int64_t step = 0, at = m, epoch = 0; step < o.steps; ++step, at += kFinetuneBatch) {
      if (at >= m) {
        perm = torch::tensor(PortablePermutation(m, (static_cast<uint64_t>(req.seed) + 4000) * 1000003ULL +
                                                        static_cast<uint64_t>(i) * 7919 + static_cast<uint64_t>(++epoch)),
                             torch::kInt64).to(req.device);
        at = 0;
      }
      const torch::Tensor idx = perm.slice(0, at, std::min(at + kFinetuneBatch, m));
      TrainStep(*model, adam, images.index_select(0, idx), labels.index_select(0, idx));
    }
    finetuned.push_back(FlatWeights(*model));
  }
  r.predicted = predicted;
  r.finetuned = torch::stack(finetuned);
  r.computed = true;
  Atomically(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    archive.write("predicted", r.predicted);
    archive.write("finetuned", r.finetuned);
    archive.write("triples", torch::stack({torch::tensor(a, torch::kInt64), torch::tensor(b, torch::kInt64),
                                           torch::tensor(rows, torch::kInt64)}, 1));
    archive.save_to(tmp);
  });
  if (log) {
    log->Text(fmt::format("refine pairs {}: {} merger predictions fine-tuned {} steps each in {:.1f} s", r.hash.substr(0, 12),
                          n, o.steps, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  }
  return r;
}

// ---- the refiner ----------------------------------------------------------------------------------

WeightRefinerImpl::WeightRefinerImpl(const std::string& net, const ModelSpec& spec, const RefinerOptions& o)
    : groups_(Tokenisation("neuron", spec)) {
  if (net != "kan" && net != "mlp") throw BadInput(fmt::format("refiner net '{}': expected kan or mlp", net));
  const auto layers = static_cast<int64_t>(groups_.size());
  in_mean = register_buffer("in_mean", torch::zeros({layers}));
  in_std = register_buffer("in_std", torch::ones({layers}));
  res_mean = register_buffer("res_mean", torch::zeros({layers}));
  res_std = register_buffer("res_std", torch::ones({layers}));
  for (size_t l = 0; l < groups_.size(); ++l) {
    const int64_t d = groups_[l].size(1);
    const std::vector<int64_t> widths{d, o.hidden, d};
    const int64_t hidden = MatchedMlpHidden(d, d, KanParameterCount(widths, o.Spline()));
    mlp_hidden_.push_back(hidden);
    if (net == "kan") {
      nets_.emplace_back(Kan(widths, o.Spline()));
    } else {
      nets_.emplace_back(RefineMlp(d, hidden, d));
    }
    register_module("net_" + std::to_string(l), nets_.back().ptr());
  }
}

torch::Tensor WeightRefinerImpl::LayerForward(size_t layer, const torch::Tensor& tokens) {
  return nets_[layer].forward(tokens);
}

torch::Tensor WeightRefinerImpl::forward(const torch::Tensor& predicted) {
  const int64_t b = predicted.size(0);
  std::vector<torch::Tensor> residuals, where;
  for (size_t l = 0; l < groups_.size(); ++l) {
    const torch::Tensor idx = groups_[l].reshape({-1}).to(predicted.device());
    const torch::Tensor tokens = predicted.index_select(1, idx).reshape({-1, groups_[l].size(1)});
    const torch::Tensor x = (tokens - in_mean[l]) / in_std[l];
    residuals.push_back((LayerForward(l, x) * res_std[l] + res_mean[l]).reshape({b, -1}));
    where.push_back(idx);
  }
  // The groups partition the vector: every entry gets its token's residual.
  return predicted + torch::zeros_like(predicted).index_copy(1, torch::cat(where), torch::cat(residuals, 1));
}

torch::Tensor TrainedRefiner::Refine(const torch::Tensor& predicted) const {
  torch::NoGradGuard no_grad;
  model->eval();
  return model->forward(predicted.to(model->in_mean.device(), torch::kFloat));
}

TrainedRefiner GetRefiner(const std::string& net, const MergerRequest& req, const TrainedMerger& merger,
                          const ZooTriples& triples, const RefinerOptions& o, RunStore& store, RunLogger* log) {
  TrainedRefiner t;
  t.pairs_hash = JsonHash(PairsSpec(req, merger, o));
  const nlohmann::json spec = {
      {"kind", "weight_refiner"},
      {"refiner_version", kRefinerVersion},
      {"net", net},
      {"merger", merger.hash},
      {"refine_pairs", t.pairs_hash},
      {"zoo_grid", req.grid->name},
      {"model", {{"arch", triples.spec.arch}, {"activation", triples.spec.activation}, {"init", triples.spec.init}}},
      {"options",
       {{"pairs", o.pairs}, {"steps", o.steps}, {"finetune_lr", o.finetune_lr}, {"val", o.val}, {"hidden", o.hidden},
        {"grid", o.grid}, {"order", o.order}, {"range", o.range}, {"lr", o.lr}, {"epochs", o.epochs}}},
      {"seed", req.seed},
      {"device", req.device.is_cuda() ? "cuda" : "cpu"},
      {"threads", req.threads},
      {"blas", req.blas}};
  t.hash = JsonHash(spec);
  const std::string path = (fs::path(req.zoo_dir) / ("refiner-" + t.hash + ".pt")).string();
  torch::manual_seed(static_cast<uint64_t>(req.seed) + 51);
  t.model = std::make_shared<WeightRefinerImpl>(net, triples.spec, o);
  if (fs::exists(path)) {
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(path, torch::Device(torch::kCPU));
      t.model->load(archive);
    } catch (const c10::Error& e) {
      throw BadInput(fmt::format("{}: cannot load the refiner ({})", path, e.what_without_backtrace()));
    }
    t.model->to(req.device);
    t.model->eval();
    if (auto known = store.GetModel(t.hash)) t.metrics = known->metrics;
    return t;
  }

  const auto t0 = std::chrono::steady_clock::now();
  const RefinePairs pairs = GetRefinePairs(req, merger, triples, o, log);
  t.pairs_computed = pairs.computed;
  t.model->to(req.device);
  const int64_t n = pairs.predicted.size(0), n_val = pairs.val_count, n_train = n - n_val;
  const torch::Tensor p = pairs.predicted.to(req.device), f = pairs.finetuned.to(req.device);
  const torch::Tensor p_train = p.slice(0, 0, n_train), p_val = p.slice(0, n_train);
  const torch::Tensor f_train = f.slice(0, 0, n_train), f_val = f.slice(0, n_train);

  // Per layer: the standardised tokens and residuals, statistics from the training pairs only.
  struct LayerData {
    torch::Tensor x_train, y_train, x_val, y_val;
  };
  std::vector<LayerData> layers;
  {
    torch::NoGradGuard no_grad;
    const auto& groups = t.model->groups();
    for (size_t l = 0; l < groups.size(); ++l) {
      const torch::Tensor idx = groups[l].reshape({-1}).to(req.device);
      const int64_t d = groups[l].size(1);
      auto tokens = [&](const torch::Tensor& w) { return w.index_select(1, idx).reshape({-1, d}); };
      const torch::Tensor x_tr = tokens(p_train), r_tr = tokens(f_train) - x_tr;
      const torch::Tensor x_v = tokens(p_val), r_v = tokens(f_val) - x_v;
      t.model->in_mean[l].fill_(x_tr.mean());
      t.model->in_std[l].fill_(x_tr.std() + 1e-8);
      t.model->res_mean[l].fill_(r_tr.mean());
      t.model->res_std[l].fill_(r_tr.std() + 1e-8);
      auto in = [&](const torch::Tensor& x) { return (x - t.model->in_mean[l]) / t.model->in_std[l]; };
      auto out = [&](const torch::Tensor& r) { return (r - t.model->res_mean[l]) / t.model->res_std[l]; };
      layers.push_back({in(x_tr), out(r_tr), in(x_v), out(r_v)});
    }
  }
  // The loss: the mean over layers of each layer's MSE in standardised units (every layer counts alike).
  auto loss_of = [&](bool val) {
    std::vector<torch::Tensor> per_layer;
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerData& d = layers[l];
      per_layer.push_back((t.model->LayerForward(l, val ? d.x_val : d.x_train) - (val ? d.y_val : d.y_train)).pow(2).mean());
    }
    return torch::stack(per_layer).mean();
  };
  torch::optim::Adam adam(t.model->parameters(), torch::optim::AdamOptions(o.lr));
  double best = INFINITY, last_train = 0;
  int64_t best_epoch = 0;
  std::vector<torch::Tensor> best_state;
  for (int64_t epoch = 1; epoch <= o.epochs; ++epoch) {
    t.model->train();
    adam.zero_grad();
    torch::Tensor loss = loss_of(false);
    loss.backward();
    adam.step();
    last_train = loss.item<double>();
    double val_loss = 0;
    {
      torch::NoGradGuard no_grad;
      t.model->eval();
      val_loss = loss_of(true).item<double>();
    }
    if (log) {
      log->Scalar("refine/train_loss", last_train, epoch);
      log->Scalar("refine/val_loss", val_loss, epoch);
    }
    if (val_loss < best || best_epoch == 0) {
      best = val_loss;
      best_epoch = epoch;
      best_state.clear();
      for (const auto& w : t.model->parameters()) best_state.push_back(w.detach().clone());
    }
  }
  torch::NoGradGuard no_grad;
  {
    auto params = t.model->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_state[i]);
  }
  t.model->eval();
  auto mse = [](const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).mean().item<double>(); };
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t kan_parameters = 0, mlp_parameters = 0;
  for (size_t l = 0; l < t.model->groups().size(); ++l) {
    const int64_t d = t.model->groups()[l].size(1);
    kan_parameters += KanParameterCount({d, o.hidden, d}, o.Spline());
    mlp_parameters += MlpParameterCount(d, t.model->mlp_hidden(l), d);
  }
  // The reference a refiner must beat to have learned more than a shift: P plus each layer's
  // mean training residual (a net that outputs 0 in standardised units).
  auto mean_shift = [&](const torch::Tensor& w) {
    std::vector<torch::Tensor> where, shift;
    for (size_t l = 0; l < t.model->groups().size(); ++l) {
      const torch::Tensor idx = t.model->groups()[l].reshape({-1}).to(w.device());
      where.push_back(idx);
      shift.push_back(t.model->res_mean[l].expand({idx.size(0)}));
    }
    return w + torch::zeros({w.size(1)}, w.options()).index_copy(0, torch::cat(where), torch::cat(shift));
  };
  t.metrics = {{"val_mse", mse(t.model->forward(p_val), f_val)},
               {"val_mse_none", mse(p_val, f_val)},
               {"val_mse_mean", mse(mean_shift(p_val), f_val)},
               {"train_mse", mse(t.model->forward(p_train), f_train)},
               {"train_mse_none", mse(p_train, f_train)},
               {"move_mse", mse(p, f)},
               {"train_loss", last_train},
               {"val_loss", best},
               {"best_epoch", best_epoch},
               {"parameters", CountParameters(*t.model)},
               {"kan_parameters", kan_parameters},
               {"mlp_parameters", mlp_parameters},
               {"pairs", n},
               {"train_pairs", n_train},
               {"val_pairs", n_val},
               {"seconds", seconds}};
  t.model->to(torch::kCPU);
  Atomically(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    t.model->save(archive);
    archive.save_to(tmp);
  });
  t.model->to(req.device);
  t.trained = true;
  ModelRecord record;
  record.hash = t.hash;
  record.path = path;
  record.spec = spec;
  record.metrics = t.metrics;
  record.train_seconds = seconds;
  store.PutModel(record);
  return t;
}

}  // namespace tb
