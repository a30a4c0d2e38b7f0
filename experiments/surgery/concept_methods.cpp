#include "experiments/surgery/concept_methods.h"

#include <unistd.h>

#include <filesystem>
#include <string_view>

#include <fmt/format.h>
#include <torch/version.h>

#include "experiments/surgery/linear_algebra.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace {

// An SAE depends only on the features it is fitted to, its options and its seeds: every head
// variant, calibration and source control of one A fits the same one. It is cached under
// ctx.cache_dir by a digest of all of these (the features' bytes included), with its loss
// curve, so a cached SAE is bit-for-bit the one training would give.
std::string SaeKey(const torch::Tensor& features, const SaeOptions& o, int64_t concepts, uint64_t init_seed,
                   uint64_t train_seed, const std::string& machine) {
  const torch::Tensor cpu = features.to(torch::kCPU).contiguous();
  const std::string_view bytes(static_cast<const char*>(cpu.data_ptr()), static_cast<size_t>(cpu.nbytes()));
  return JsonHash({{"kind", "sae"}, {"version", 1}, {"libtorch", TORCH_VERSION}, {"features", Sha256Hex(bytes)},
                   {"dtype", std::string(c10::toString(cpu.scalar_type()))},
                   {"shape", {cpu.size(0), cpu.size(1)}}, {"concepts", concepts}, {"l1", o.l1}, {"epochs", o.epochs},
                   {"lr", o.lr}, {"batch_size", o.batch_size}, {"init_seed", init_seed}, {"train_seed", train_seed},
                   {"machine", machine}});
}

SparseAutoencoder FitSae(Classifier& model, const Split& data, int64_t concepts, double l1, int64_t epochs,
                         MethodContext& ctx, const std::string& key, MetricMap& diag) {
  namespace fs = std::filesystem;
  auto features = FeaturesOf(model, data.images, ctx.device);
  const uint64_t init_seed = ctx.seed * 7 + (key == "a" ? 11 : 22);
  torch::manual_seed(init_seed);
  SparseAutoencoder sae(features.size(1), concepts);  // drawn either way: the RNG moves alike
  sae->to(ctx.device);
  SaeOptions o;
  o.l1 = l1;
  o.epochs = epochs;
  const std::string path =
      ctx.cache_dir.empty() ? "" : ctx.cache_dir + "/sae-" + SaeKey(features, o, concepts, init_seed, ctx.seed, ctx.machine) + ".pt";
  std::vector<double> losses;
  bool cached = false;
  if (!path.empty() && fs::exists(path)) {
    try {
      torch::serialize::InputArchive archive;
      archive.load_from(path, torch::Device(torch::kCPU));  // saved from any device, read on the CPU
      sae->load(archive);
      sae->to(ctx.device);
      sae->eval();
      torch::Tensor curve;
      archive.read("losses", curve);
      curve = curve.to(torch::kFloat64).contiguous();
      losses.assign(curve.data_ptr<double>(), curve.data_ptr<double>() + curve.numel());
      cached = true;
    } catch (const c10::Error& e) {
      // An unreadable cache file is not the run's problem: fit the SAE again, as on a miss.
      ctx.log.Text(fmt::format("{}: unreadable cached SAE, fitting it again", path));
      losses.clear();
      torch::manual_seed(init_seed);
      sae = SparseAutoencoder(features.size(1), concepts);
      sae->to(ctx.device);
    }
  }
  if (!cached) {
    losses = TrainSae(sae, features, o, ctx.seed);
    if (!path.empty()) {
      // Best effort: a cache that cannot be written costs only time.
      const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
      try {
        fs::create_directories(ctx.cache_dir);
        torch::serialize::OutputArchive archive;
        sae->save(archive);
        archive.write("losses", torch::tensor(losses, torch::kFloat64));
        archive.save_to(tmp);
        fs::rename(tmp, path);  // atomic: a concurrent run sees no file or the whole file
      } catch (const std::exception& e) {
        std::error_code ec;
        fs::remove(tmp, ec);
        ctx.log.Text(fmt::format("{}: cannot cache the SAE ({})", path, e.what()));
      }
    }
  }
  for (size_t i = 0; i < losses.size(); ++i) ctx.log.Scalar(key + "/sae_loss", losses[i], static_cast<int64_t>(i + 1));
  diag[key + "_sae_loss_first"] = losses.empty() ? 0.0 : losses.front();
  diag[key + "_sae_loss_last"] = losses.empty() ? 0.0 : losses.back();
  return sae;
}

torch::Tensor RandomLike(const torch::Tensor& v, uint64_t seed) {
  torch::manual_seed(seed);
  auto r = torch::randn_like(v);
  return r * (v.norm() / r.norm().clamp_min(1e-12));
}

}  // namespace

void SaeHeadOptions::Bind(Options& o) {
  o.Add("concepts", &concepts, "SAE concepts c (encoder in→2c→c)");
  o.Add("l1", &l1, "SAE sparsity weight");
  o.Add("sae_epochs", &sae_epochs, "SAE training epochs (report: unspecified)");
  o.Add("head", &head, "A's transfer row", {"keep", "copy_row", "stitch_row"});
  o.Add("ridge", &ridge, "ridge term of the stitch (head=stitch_row)");
}

void ConceptInjectionOptions::Bind(Options& o) {
  sae.Bind(o);
  o.Add("steps", &steps, "optimizer steps for the concept vector and strength");
  o.Add("lr", &lr, "Adam learning rate of the injection");
  o.Add("transfer_weight", &transfer_weight, "weight of the class-4 cross-entropy");
  o.Add("mse_weight", &mse_weight, "weight of the MSE to A's original logits on S_A");
  o.Add("ce_weight", &ce_weight, "weight of the cross-entropy on S_A");
  o.Add("concept_source", &concept_source, "learned vector, or a fixed random one of the same norm (control)",
        {"learned", "random"});
}

ConceptInjection::ConceptInjection(bool preserve)
    : name_(preserve ? "preserved_concept_injection" : "concept_injection") {
  if (preserve) {
    mutable_opts().mse_weight = 0.7;
    mutable_opts().ce_weight = 0.3;
  }
}

void ConceptInjection::Check(const MethodCheck& c) const {
  if (opts().sae.head == "copy_row") RequireEqualWidths(name_ + " head=copy_row", c);
  RequireAtLeast("concepts", static_cast<double>(opts().sae.concepts), 1);
  RequireAtLeast("steps", static_cast<double>(opts().steps), 0);
  RequireAtLeast("ridge", opts().sae.ridge, 0);
}

MethodResult ConceptInjection::Run(MethodContext& ctx) {
  const auto& o = opts();
  MetricMap diag;
  ModelPtr original = CloneModel(ctx.target);
  ApplyHead(o.sae.head, *ctx.target, *ctx.source, ctx.data, ctx.device, o.sae.ridge, false, diag, "");
  SparseAutoencoder sae = FitSae(*ctx.target, ctx.data.a_train, o.sae.concepts, o.sae.l1, o.sae.sae_epochs, ctx, "a", diag);
  InjectionSpec spec;
  spec.learn_concept = o.concept_source == "learned";
  torch::manual_seed(ctx.seed + 99);
  auto concept = torch::randn({o.sae.concepts}, torch::TensorOptions().device(ctx.device)) * 0.1;
  auto model = std::make_shared<InjectedClassifier>(ctx.target, sae, concept, torch::zeros_like(concept), spec);
  InjectionLoss w;
  w.transfer = o.transfer_weight;
  w.mse = o.mse_weight;
  w.ce = o.ce_weight;
  InjectionTraining t;
  t.steps = o.steps;
  t.lr = o.lr;
  diag["final_loss"] = TrainInjection(*model, *original, ctx, w, t, name_ + "/");
  diag["gamma"] = model->gamma();
  return {model, diag};
}

void ConceptAlignmentOptions::Bind(Options& o) {
  sae.Bind(o);
  o.Add("alignment", &alignment, "B→A alignment: Procrustes on shared-class concept centroids, or a feature-aligner MLP",
        {"procrustes", "mlp"});
  o.Add("free_k", &free_k, "free directions (0: min(8, concepts / 3))");
  o.Add("sigma", &sigma, "width of the spatial detector");
  o.Add("detector_hidden", &detector_hidden, "hidden units of the learned detector");
  o.Add("beta", &beta, "gate = beta * spatial + (1 - beta) * learned");
  o.Add("preservation_weight", &preservation_weight, "weight of the MSE to A's logits on S_A");
  o.Add("transfer_weight", &transfer_weight, "weight of the class-4 cross-entropy");
  o.Add("confidence_weight", &confidence_weight, "weight of the prediction entropy on class 4");
  o.Add("lr", &lr, "Adam learning rate");
  o.Add("steps", &steps, "optimizer steps");
  o.Add("transfer_batch", &transfer_batch, "class-4 samples per step");
  o.Add("preserve_batch", &preserve_batch, "S_A samples per step");
  o.Add("aligner_hidden", &aligner_hidden, "hidden units of the feature aligner (alignment=mlp)");
  o.Add("aligner_epochs", &aligner_epochs, "training epochs of the feature aligner");
  o.Add("concept_source", &concept_source, "the aligned class-4 concept from B, or a random vector of its norm (control)",
        {"source", "random"});
}

ConceptAlignment::ConceptAlignment(bool cross_architecture)
    : name_(cross_architecture ? "cross_arch_alignment" : "vector_space_alignment") {
  if (cross_architecture) mutable_opts().alignment = "mlp";
}

void ConceptAlignment::Check(const MethodCheck& c) const {
  const auto& o = opts();
  if (o.sae.head == "copy_row") RequireEqualWidths(name_ + " head=copy_row", c);
  RequireAtLeast("concepts", static_cast<double>(o.sae.concepts), 3);
  if (o.free_k > o.sae.concepts) throw BadInput(fmt::format("free_k={}: expected at most concepts ({})", o.free_k, o.sae.concepts));
  RequireAtLeast("steps", static_cast<double>(o.steps), 0);
  RequireAtLeast("sigma", o.sigma, 1e-9);
  if (o.beta < 0 || o.beta > 1) throw BadInput(fmt::format("beta={}: expected a value in [0, 1]", o.beta));
  bool shared = false;
  for (int64_t a : c.classes.a) {
    shared = shared || std::find(c.classes.b.begin(), c.classes.b.end(), a) != c.classes.b.end();
  }
  if (!shared) throw BadInput(fmt::format("{}: classes_a and classes_b share no class to align on", name_));
}

MethodResult ConceptAlignment::Run(MethodContext& ctx) {
  const auto& o = opts();
  MetricMap diag;
  const auto& cls = ctx.data.classes;
  const int64_t t = cls.transfer.front();
  std::vector<int64_t> shared;
  for (int64_t c : cls.a) {
    if (std::find(cls.b.begin(), cls.b.end(), c) != cls.b.end()) shared.push_back(c);
  }
  if (shared.empty()) throw BadInput(fmt::format("{}: S_A and S_B share no class to align on", name_));
  ModelPtr original = CloneModel(ctx.target);
  SparseAutoencoder sae_a = FitSae(*ctx.target, ctx.data.a_train, o.sae.concepts, o.sae.l1, o.sae.sae_epochs, ctx, "a", diag);
  auto codes_a = sae_a->Encode(FeaturesOf(*ctx.target, ctx.data.a_train.images, ctx.device)).detach();
  auto labels_a = ctx.data.a_train.labels.to(ctx.device);
  torch::Tensor anchor;  // the class-4 concept in A's concept space
  if (o.alignment == "procrustes") {
    SparseAutoencoder sae_b = FitSae(*ctx.source, ctx.data.b_train, o.sae.concepts, o.sae.l1, o.sae.sae_epochs, ctx, "b", diag);
    auto codes_b = sae_b->Encode(FeaturesOf(*ctx.source, ctx.data.b_train.images, ctx.device)).detach();
    auto labels_b = ctx.data.b_train.labels.to(ctx.device);
    auto c_a = ClassCentroids(codes_a, labels_a, shared);
    auto c_b = ClassCentroids(codes_b, labels_b, shared);
    auto r = Procrustes(c_b, c_a);
    diag["alignment_error"] = AlignmentError(c_b, r, c_a);
    anchor = ClassCentroids(codes_b, labels_b, {t}).mm(r).squeeze(0);
  } else {
    // A feature aligner B→A trained on shared-class images (both models see the same images).
    Split shared_images = SelectClasses(ctx.data.b_train, shared);
    auto fb = FeaturesOf(*ctx.source, shared_images.images, ctx.device);
    auto fa = FeaturesOf(*ctx.target, shared_images.images, ctx.device);
    torch::manual_seed(ctx.seed + 5);
    torch::nn::Sequential aligner(torch::nn::Linear(fb.size(1), o.aligner_hidden), torch::nn::ReLU(),
                                  torch::nn::Linear(o.aligner_hidden, fa.size(1)));
    aligner->to(ctx.device);
    torch::optim::Adam opt(aligner->parameters(), torch::optim::AdamOptions(1e-3));
    const int64_t n = fb.size(0);
    for (int64_t e = 0; e < o.aligner_epochs; ++e) {
      auto perm = torch::tensor(PortablePermutation(n, ctx.seed * 613ULL + static_cast<uint64_t>(e)), torch::kInt64).to(ctx.device);
      double sum = 0;
      for (int64_t i = 0; i < n; i += 64) {
        auto idx = perm.slice(0, i, std::min<int64_t>(i + 64, n));
        opt.zero_grad();
        auto loss = torch::mse_loss(aligner->forward(fb.index_select(0, idx)), fa.index_select(0, idx));
        loss.backward();
        opt.step();
        sum += loss.item<double>() * static_cast<double>(idx.size(0));
      }
      ctx.log.Scalar(name_ + "/aligner_loss", sum / static_cast<double>(n), e + 1);
    }
    torch::NoGradGuard no_grad;
    auto pred = aligner->forward(fb);
    diag["alignment_error"] = (pred - fa).norm().item<double>() / std::max(1e-12, fa.norm().item<double>());
    Split four = SelectClasses(ctx.data.b_train, {t});
    auto aligned = aligner->forward(FeaturesOf(*ctx.source, four.images, ctx.device));
    anchor = sae_a->Encode(aligned).mean(0).detach();
  }
  // Free directions: the part of A's concept space its own class centroids do not use.
  const int64_t k = o.free_k > 0 ? o.free_k : std::min<int64_t>(8, o.sae.concepts / 3);
  auto free = FreeDirections(ClassCentroids(codes_a, labels_a, cls.a), k);
  diag["free_k"] = static_cast<double>(k);
  auto concept = free.mv(free.t().mv(anchor));
  if (o.concept_source == "random") concept = RandomLike(concept, ctx.seed + 4242);
  diag["concept_norm"] = concept.norm().item<double>();

  ApplyHead(o.sae.head, *ctx.target, *ctx.source, ctx.data, ctx.device, o.sae.ridge, false, diag, "");
  InjectionSpec spec;
  spec.gated = true;
  spec.blend = true;
  spec.beta = o.beta;
  spec.sigma = o.sigma;
  spec.detector_hidden = o.detector_hidden;
  torch::manual_seed(ctx.seed + 17);
  auto model = std::make_shared<InjectedClassifier>(ctx.target, sae_a, concept, anchor, spec);
  InjectionLoss w;
  w.transfer = o.transfer_weight;
  w.mse = o.preservation_weight;
  w.confidence = o.confidence_weight;
  InjectionTraining tr;
  tr.steps = o.steps;
  tr.lr = o.lr;
  tr.transfer_batch = o.transfer_batch;
  tr.preserve_batch = o.preserve_batch;
  diag["final_loss"] = TrainInjection(*model, *original, ctx, w, tr, name_ + "/");
  diag["gamma"] = model->gamma();
  diag["rho"] = model->rho();
  return {model, diag};
}

}  // namespace tb
