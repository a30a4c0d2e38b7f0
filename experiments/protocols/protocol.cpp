#include "experiments/protocols/protocol.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/data/dataset.h"
#include "experiments/models/sequence.h"
#include "store/errors.h"

namespace tb {

ProtocolRegistry& Protocols() {
  static ProtocolRegistry registry("protocol");
  return registry;
}

ModelPtr SourceControl(const ModelPtr& source, const std::string& control, uint64_t seed, torch::Device device) {
  if (control == "trained") return CloneModel(source);  // a method may not change the zoo's B
  if (control == "random") {
    torch::manual_seed(seed + 7777);
    ModelPtr fresh = MakeModel(source->spec());
    fresh->to(device);
    fresh->eval();
    return fresh;
  }
  // shuffled: every parameter tensor's entries permuted; same values, no structure.
  ModelPtr shuffled = CloneModel(source);
  torch::NoGradGuard no_grad;
  uint64_t i = 0;
  for (auto& p : shuffled->parameters()) {
    auto perm = torch::tensor(PortablePermutation(p.numel(), seed * 7919ULL + i++), torch::kInt64).to(device);
    p.copy_(p.reshape({-1}).index_select(0, perm).reshape(p.sizes()));
  }
  shuffled->eval();
  return shuffled;
}

void CheckClassList(const std::string& name, const std::vector<int64_t>& classes) {
  if (classes.empty()) throw BadInput(fmt::format("{}: expected at least one class", name));
  std::set<int64_t> seen;
  for (int64_t c : classes) {
    if (c < 0 || c > 9) throw BadInput(fmt::format("{}={}: class {} out of range 0..9", name, fmt::join(classes, ","), c));
    if (!seen.insert(c).second) throw BadInput(fmt::format("{}={}: class {} listed twice", name, fmt::join(classes, ","), c));
  }
}

void CheckTrainOptions(const TrainOptions& t, const std::string& prefix) {
  if (t.epochs < 0) throw BadInput(fmt::format("{}epochs={}: expected >= 0", prefix, t.epochs));
  if (!(t.lr > 0)) throw BadInput(fmt::format("{}lr={}: expected > 0", prefix, t.lr));
  if (t.batch_size < 1) throw BadInput(fmt::format("{}batch_size={}: expected >= 1", prefix, t.batch_size));
  if (!(t.val_fraction >= 0 && t.val_fraction < 1)) {
    throw BadInput(fmt::format("{}val_fraction={}: expected a value in [0, 1)", prefix, t.val_fraction));
  }
}

void CheckArchitecture(const std::string& key, const std::string& arch, ArchKind kind) {
  const auto images = ImageModelNames();
  const bool image = std::find(images.begin(), images.end(), arch) != images.end();
  const bool sequence = !image && IsSequenceArch(arch);
  if (kind == ArchKind::kImage && !image) {
    throw BadInput(fmt::format("{}={}: {} (expected an image model: one of {})", key, arch,
                               sequence ? "a sequence model, which this protocol does not take" : "unknown architecture",
                               fmt::join(images, ", ")));
  }
  if (kind == ArchKind::kSequence && !sequence) {
    throw BadInput(fmt::format("{}={}: {} (expected a sequence model: one of {}, optionally with a width, e.g. lstm96)",
                               key, arch, image ? "an image model, not a sequence model" : "unknown architecture",
                               fmt::join(SequenceFamilies(), ", ")));
  }
  if (sequence) {
    try {
      ParseSequenceArch(arch);  // its width
    } catch (const BadInput& e) {
      throw BadInput(fmt::format("{}={}: {}", key, arch, e.what()));
    }
    return;
  }
  if (!image) {
    throw BadInput(fmt::format("{}={}: unknown architecture (expected one of {}, a sequence model optionally with a width)",
                               key, arch, fmt::join(ModelNames(), ", ")));
  }
}

ZooRequest ProtocolZooRequest(const Dataset& dataset, const ModelSpec& model, const std::vector<int64_t>& classes,
                              uint64_t seed, int64_t init_seed, const TrainOptions& train, int64_t train_per_class,
                              const ProtocolContext& ctx) {
  ZooRequest r;
  r.dataset = &dataset;
  r.model = model;
  r.classes = classes;
  r.seed = seed;
  r.init_seed = init_seed;
  r.train = train;
  r.train_per_class = train_per_class;
  r.device = ctx.device;
  r.threads = at::get_num_threads();
  r.blas = ctx.blas;
  return r;
}

}  // namespace tb
