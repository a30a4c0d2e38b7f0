#include "experiments/train/zoo.h"

#include "experiments/models/sequence.h"

#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;

nlohmann::json ZooRequest::Spec() const {
  nlohmann::json spec = {{"dataset", dataset->name},
          {"dataset_sha256", dataset->sha256},
          {"arch", model.arch},
          {"activation", model.activation},
          {"init", model.init},
          {"num_classes", model.num_classes},
          {"classes", classes},
          {"seed", seed},
          {"train", train.ToJson()},
          {"train_per_class", train_per_class},
          {"trainer_version", kTrainerVersion},
          {"device", device.is_cuda() ? "cuda" : "cpu"},  // GPU kernels give other weights
          {"threads", threads},
          {"blas", blas}};
  if (init_seed >= 0) spec["init_seed"] = init_seed;  // absent otherwise: older zoo keys stay valid
  if (IsSequenceArch(model.arch)) spec["sequence_models"] = kSequenceModelVersion;  // likewise
  return spec;
}

std::string ZooRequest::Hash() const { return JsonHash(Spec()); }

std::pair<Split, Split> ZooTrainingData(const Dataset& dataset, const std::vector<int64_t>& classes,
                                        int64_t train_per_class, double val_fraction, uint64_t seed) {
  Split selected = LimitPerClass(SelectClasses(dataset.train, classes), train_per_class);
  return CarveValidation(selected, val_fraction, seed);
}

std::string Zoo::PathFor(const std::string& hash) const { return (fs::path(dir_) / (hash + ".pt")).string(); }

void SaveModel(Classifier& model, const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  // Always a CPU copy on disk, so a zoo trained on a GPU loads on any machine.
  ModelPtr cpu = MakeModel(model.spec());
  {
    torch::NoGradGuard no_grad;
    auto src = model.named_parameters();
    for (auto& item : cpu->named_parameters()) item.value().copy_(src.find(item.key())->to(torch::kCPU));
  }
  torch::serialize::OutputArchive archive;
  cpu->save(archive);
  archive.save_to(tmp);
  fs::rename(tmp, path);  // atomic: concurrent readers see the old file or the whole new one
}

void LoadModel(Classifier& model, const std::string& path) {
  torch::serialize::InputArchive archive;
  const auto device = model.parameters().front().device();
  try {
    archive.load_from(path, torch::Device(torch::kCPU));
    model.load(archive);
    model.to(device);  // load() takes the archive's device; put the weights back where asked
  } catch (const c10::Error& e) {
    throw BadInput(fmt::format("{}: cannot load model ({})", path, e.what_without_backtrace()));
  }
}

ZooEntry Zoo::Get(const ZooRequest& request, RunLogger* log, const std::string& prefix) {
  const uint64_t init_seed = request.init_seed >= 0 ? static_cast<uint64_t>(request.init_seed) : request.seed;
  return GetOrTrain(request.Spec(), request.model, init_seed, request.device, [&](Classifier& model, double& seconds) {
    auto [fit, val] = ZooTrainingData(*request.dataset, request.classes, request.train_per_class,
                                      request.train.val_fraction, request.seed);
    TrainResult r = Train(model, fit, val, request.train, request.seed, log, prefix);
    seconds = r.seconds;
    return nlohmann::json{{"val_acc", r.val_acc.empty() ? 0.0 : r.val_acc.back()},
                          {"loss", r.loss.empty() ? 0.0 : r.loss.back()},
                          {"epochs_run", r.epochs_run},
                          {"train_samples", fit.size()}};
  });
}

ZooEntry Zoo::GetOrTrain(const nlohmann::json& spec, const ModelSpec& model, uint64_t init_seed, torch::Device device,
                         const std::function<nlohmann::json(Classifier& model, double& seconds)>& train) {
  ZooEntry entry;
  entry.hash = JsonHash(spec);
  const std::string path = PathFor(entry.hash);
  torch::manual_seed(init_seed);
  entry.model = MakeModel(model);
  entry.model->to(device);
  if (fs::exists(path)) {
    LoadModel(*entry.model, path);
    entry.model->eval();
    if (auto known = store_.GetModel(entry.hash)) entry.metrics = known->metrics;
    return entry;
  }
  double seconds = 0;
  entry.metrics = train(*entry.model, seconds);
  SaveModel(*entry.model, path);
  entry.trained = true;
  ModelRecord record;
  record.hash = entry.hash;
  record.path = path;
  record.spec = spec;
  record.metrics = entry.metrics;
  record.train_seconds = seconds;
  store_.PutModel(record);
  return entry;
}

}  // namespace tb
