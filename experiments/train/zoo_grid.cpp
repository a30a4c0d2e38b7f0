#include "experiments/train/zoo_grid.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/train/zoo.h"
#include "store/errors.h"
#include "store/hash.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

// Every subset of {0..9} with a size in [lo, hi], by size then lexicographic.
std::vector<std::vector<int64_t>> Subsets(int64_t lo, int64_t hi) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t k = lo; k <= hi; ++k) {
    std::vector<int64_t> c(k);
    for (int64_t i = 0; i < k; ++i) c[i] = i;
    while (true) {
      out.push_back(c);
      int64_t i = k - 1;
      while (i >= 0 && c[i] == 10 - k + i) --i;
      if (i < 0) break;
      ++c[i];
      for (int64_t j = i + 1; j < k; ++j) c[j] = c[j - 1] + 1;
    }
  }
  return out;
}

template <class T>
std::vector<T> List(const nlohmann::json& doc, const std::string& key, const std::string& path) {
  if (!doc.contains(key)) throw BadInput(fmt::format("{}: \"{}\" is missing", path, key));
  if (!doc.at(key).is_array() || doc.at(key).empty()) throw BadInput(fmt::format("{}: \"{}\" must be a non-empty list", path, key));
  try {
    return doc.at(key).get<std::vector<T>>();
  } catch (const nlohmann::json::exception&) {
    throw BadInput(fmt::format("{}: \"{}\"={}: wrong type of value", path, key, doc.at(key).dump()));
  }
}

void CheckNames(const std::string& path, const std::string& what, const std::vector<std::string>& names,
                const std::vector<std::string>& known) {
  for (const auto& n : names) {
    if (std::find(known.begin(), known.end(), n) == known.end()) {
      throw BadInput(fmt::format("{}: {} '{}': unknown (expected one of {})", path, what, n, fmt::join(known, ", ")));
    }
  }
}

std::string ModelPath(const std::string& results_dir, const std::string& hash) {
  return (fs::path(results_dir) / "zoo" / "grid" / (hash + ".pt")).string();
}

// The bin a model stopping (or checkpointed) at `epoch` is filed under: the closest checkpoint
// at or before it, the first one when it stops earlier.
int64_t BinFor(const std::vector<int64_t>& checkpoints, int64_t epoch) {
  int64_t bin = checkpoints.front();
  for (int64_t c : checkpoints) {
    if (c <= epoch) bin = c;
  }
  return bin;
}

}  // namespace

std::string ZoosDir() { return (fs::path(TB_SOURCE_DIR) / "experiments" / "zoos").string(); }

ZooGrid LoadZooGrid(const std::string& name_or_path) {
  std::string path = name_or_path;
  if (!fs::exists(path)) path = (fs::path(ZoosDir()) / (name_or_path + ".json")).string();
  std::ifstream in(path);
  if (!in) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(ZoosDir())) {
      if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
    }
    std::sort(names.begin(), names.end());
    throw BadInput(fmt::format("zoo grid '{}': no such file (expected a path or one of {})", name_or_path, fmt::join(names, ", ")));
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
  if (!doc.is_object()) throw BadInput(fmt::format("{}: expected a JSON object", path));
  static const std::set<std::string> kKeys = {"name", "description", "dataset", "data.dir", "data.train_per_class", "arch",
                                              "subsets", "activations", "inits", "seeds", "checkpoints", "train"};
  for (const auto& [k, v] : doc.items()) {
    if (!kKeys.count(k)) throw BadInput(fmt::format("{}: unknown key \"{}\" (accepted: {})", path, k, fmt::join(kKeys, ", ")));
  }
  ZooGrid g;
  g.path = path;
  try {
    g.name = doc.at("name").get<std::string>();
    g.dataset = doc.value("dataset", g.dataset);
    g.data_dir = doc.value("data.dir", g.data_dir);
    g.train_per_class = doc.value("data.train_per_class", g.train_per_class);
    g.arch = doc.value("arch", g.arch);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(fmt::format("{}: {} (expected \"name\" and strings or numbers as documented)", path, e.what()));
  }
  CheckSuiteName(g.name);
  CheckNames(path, "dataset", {g.dataset}, DatasetNames());
  CheckNames(path, "architecture", {g.arch}, ImageModelNames());  // a grid varies activations and inits
  g.activations = List<std::string>(doc, "activations", path);
  CheckNames(path, "activation", g.activations, ActivationNames());
  g.inits = List<std::string>(doc, "inits", path);
  CheckNames(path, "init", g.inits, InitNames());
  if (doc.contains("seeds")) g.seeds = List<int64_t>(doc, "seeds", path);
  for (size_t i = 0; i < g.seeds.size(); ++i) {
    if (g.seeds[i] < 0 || std::count(g.seeds.begin(), g.seeds.begin() + static_cast<std::ptrdiff_t>(i), g.seeds[i]) > 0) {
      throw BadInput(fmt::format("{}: seeds={}: expected distinct seeds >= 0", path, fmt::join(g.seeds, ",")));
    }
  }
  if (doc.contains("checkpoints")) g.checkpoints = List<int64_t>(doc, "checkpoints", path);
  for (size_t i = 0; i < g.checkpoints.size(); ++i) {
    if (g.checkpoints[i] < 1 || (i > 0 && g.checkpoints[i] <= g.checkpoints[i - 1])) {
      throw BadInput(fmt::format("{}: checkpoints={}: expected increasing epochs >= 1", path, fmt::join(g.checkpoints, ",")));
    }
  }
  if (g.train_per_class < 0) throw BadInput(fmt::format("{}: data.train_per_class={}: expected >= 0", path, g.train_per_class));
  const nlohmann::json& subsets = doc.contains("subsets") ? doc.at("subsets") : nlohmann::json();
  if (subsets.is_object()) {
    const auto sizes = subsets.value("sizes", std::vector<int64_t>{2, 10});
    if (sizes.size() != 2 || sizes[0] < 1 || sizes[1] > 10 || sizes[0] > sizes[1]) {
      throw BadInput(fmt::format("{}: subsets.sizes={}: expected [lo, hi] with 1 <= lo <= hi <= 10", path, nlohmann::json(sizes).dump()));
    }
    g.subsets = Subsets(sizes[0], sizes[1]);
    const int64_t limit = subsets.value("limit", int64_t{0});
    if (limit < 0) throw BadInput(fmt::format("{}: subsets.limit={}: expected >= 0 (0: all)", path, limit));
    if (limit > 0 && limit < static_cast<int64_t>(g.subsets.size())) g.subsets.resize(limit);
  } else if (subsets.is_array() && !subsets.empty()) {
    for (const auto& s : subsets) {
      std::vector<int64_t> c;
      try {
        c = s.get<std::vector<int64_t>>();
      } catch (const nlohmann::json::exception&) {
        throw BadInput(fmt::format("{}: subset {}: expected a list of classes", path, s.dump()));
      }
      std::sort(c.begin(), c.end());
      if (c.size() < 1 || c.front() < 0 || c.back() > 9 || std::adjacent_find(c.begin(), c.end()) != c.end()) {
        throw BadInput(fmt::format("{}: subset {}: expected distinct classes 0..9", path, s.dump()));
      }
      g.subsets.push_back(c);
    }
  } else {
    throw BadInput(fmt::format("{}: \"subsets\": expected {{\"sizes\": [lo, hi], \"limit\": N}} or a list of class lists", path));
  }
  g.train.epochs = g.checkpoints.back();
  g.train.early_stopping = true;
  if (doc.contains("train")) {
    const auto& t = doc.at("train");
    static const std::set<std::string> kTrain = {"lr", "batch_size", "val_fraction", "early_stopping"};
    for (const auto& [k, v] : t.items()) {
      if (!kTrain.count(k)) throw BadInput(fmt::format("{}: unknown key \"train.{}\" (accepted: {})", path, k, fmt::join(kTrain, ", ")));
    }
    g.train.lr = t.value("lr", g.train.lr);
    g.train.batch_size = t.value("batch_size", g.train.batch_size);
    g.train.val_fraction = t.value("val_fraction", g.train.val_fraction);
    g.train.early_stopping = t.value("early_stopping", g.train.early_stopping);
  }
  if (!(g.train.lr > 0) || g.train.batch_size < 1 || !(g.train.val_fraction > 0 && g.train.val_fraction < 1)) {
    throw BadInput(fmt::format("{}: train={}: expected lr > 0, batch_size >= 1, val_fraction in (0, 1)", path, g.train.ToJson().dump()));
  }
  return g;
}

ZooUnit UnitAt(const ZooGrid& g, int64_t index) {
  // Subset-major, so a partial build covers the first subsets in every activation.
  ZooUnit u;
  const int64_t per_subset = static_cast<int64_t>(g.activations.size() * g.inits.size() * g.seeds.size());
  u.classes = g.subsets[index / per_subset];
  int64_t r = index % per_subset;
  u.seed = g.seeds[r % g.seeds.size()];
  r /= static_cast<int64_t>(g.seeds.size());
  u.init = g.inits[r % g.inits.size()];
  u.activation = g.activations[r / g.inits.size()];
  return u;
}

nlohmann::json UnitSpec(const ZooGrid& g, const ZooUnit& u, const Dataset& ds, const std::string& device,
                        int64_t threads, const std::string& blas) {
  return {{"kind", "zoo_grid_unit"},
          {"dataset", ds.name},
          {"dataset_sha256", ds.sha256},
          {"arch", g.arch},
          {"activation", u.activation},
          {"init", u.init},
          {"classes", u.classes},
          {"seed", u.seed},
          {"train", g.train.ToJson()},
          {"train_per_class", g.train_per_class},
          {"checkpoints", g.checkpoints},
          {"trainer_version", kTrainerVersion},
          {"device", device},
          {"threads", threads},
          {"blas", blas}};
}

int64_t BuildZooShard(const ZooGrid& g, const std::string& results_dir, int64_t offset, int64_t stride,
                      const std::string& device_name, const std::string& blas) {
  const torch::Device device = ResolveDevice(device_name);
  const Dataset& ds = LoadDataset(DataSpec{g.dataset, g.data_dir});
  RunStore store((fs::path(results_dir) / "runs.db").string());
  int64_t trained = 0;
  for (int64_t i = offset; i < g.Units(); i += stride) {
    const ZooUnit u = UnitAt(g, i);
    nlohmann::json spec = UnitSpec(g, u, ds, device.is_cuda() ? "cuda" : "cpu", at::get_num_threads(), blas);
    const std::string hash = JsonHash(spec);
    if (store.GetModel(hash)) continue;  // done (by this or an earlier build)
    const auto t0 = std::chrono::steady_clock::now();
    // The initial weights: the init and the seed only (the report fixes the initial seed).
    torch::manual_seed(static_cast<uint64_t>(u.seed));
    ModelPtr model = MakeModel(ModelSpec{g.arch, u.activation, u.init, ds.num_classes});
    model->to(device);
    auto [fit, val] = ZooTrainingData(ds, u.classes, g.train_per_class, g.train.val_fraction, static_cast<uint64_t>(u.seed));
    const Split test = SelectClasses(ds.test, u.classes);
    std::vector<std::pair<int64_t, ModelRecord>> saved;  // (bin, record)
    auto checkpoint = [&](int64_t epoch, bool last, const TrainResult& so_far) {
      const bool at_bin = std::find(g.checkpoints.begin(), g.checkpoints.end(), epoch) != g.checkpoints.end();
      if (!at_bin && !last) return;
      const int64_t bin = BinFor(g.checkpoints, epoch);
      ModelRecord r;
      r.hash = fmt::format("{}-e{}", hash, bin);
      r.path = ModelPath(results_dir, r.hash);
      SaveModel(*model, r.path);
      r.spec = spec;
      r.spec["kind"] = "zoo_grid_checkpoint";
      r.spec["grid"] = g.name;
      r.spec["unit"] = hash;
      r.spec["bin"] = bin;
      r.metrics = {{"epoch", epoch},
                   {"bin", bin},
                   {"val_acc", so_far.val_acc.back()},
                   {"test_acc", Accuracy(Predict(*model, test.images, 512), test.labels, u.classes)},
                   {"early_stopped", last && epoch < g.train.epochs}};
      saved.emplace_back(bin, std::move(r));
    };
    const TrainResult result = Train(*model, fit, val, g.train, static_cast<uint64_t>(u.seed), nullptr, "", checkpoint);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // A stop between bins replaces that bin's checkpoint; the unit's record says it is done.
    std::map<int64_t, ModelRecord> by_bin;
    for (auto& [bin, r] : saved) by_bin[bin] = std::move(r);
    for (auto& [bin, r] : by_bin) {
      r.train_seconds = seconds;
      store.PutModel(r);
    }
    ModelRecord unit;
    unit.hash = hash;
    unit.path = "";
    unit.spec = spec;
    unit.spec["grid"] = g.name;
    unit.spec["index"] = i;
    unit.metrics = {{"epochs_run", result.epochs_run}, {"bins", by_bin.size()}};
    unit.train_seconds = seconds;
    store.PutModel(unit);
    ++trained;
  }
  return trained;
}

nlohmann::json GridModelKey(const ZooGrid& g) {
  return {{"dataset", g.dataset},       {"data.dir", g.data_dir},       {"train_per_class", g.train_per_class},
          {"arch", g.arch},             {"checkpoints", g.checkpoints}, {"train", g.train.ToJson()},
          {"trainer_version", kTrainerVersion}};
}

namespace {

// A record trained under the grid's current settings (an edited grid file's older models do not
// count), whatever the device, thread count and BLAS it was built with.
bool OfCurrentGrid(const nlohmann::json& spec, const ZooGrid& g) {
  return spec.value("dataset", "") == g.dataset && spec.value("arch", "") == g.arch &&
         spec.value("train_per_class", int64_t{-1}) == g.train_per_class && spec.contains("train") &&
         spec.at("train") == g.train.ToJson() && spec.value("checkpoints", std::vector<int64_t>{}) == g.checkpoints &&
         spec.value("trainer_version", -1) == kTrainerVersion;
}

// What identifies a unit apart from how it was built.
std::tuple<std::vector<int64_t>, std::string, std::string, int64_t> UnitKey(const nlohmann::json& spec) {
  return {spec.at("classes").get<std::vector<int64_t>>(), spec.at("activation").get<std::string>(),
          spec.at("init").get<std::string>(), spec.at("seed").get<int64_t>()};
}

}  // namespace

std::vector<ModelRecord> GridCheckpoints(RunStore& store, const ZooGrid& g) {
  std::vector<ModelRecord> all;
  // Per unit, the build done first (its unit record's time); its checkpoints only.
  std::map<decltype(UnitKey({})), std::pair<double, std::string>> first_build;
  for (auto& r : store.ModelsOfGrid(g.name)) {
    if (!OfCurrentGrid(r.spec, g)) continue;
    if (r.spec.value("kind", "") == "zoo_grid_checkpoint") {
      all.push_back(std::move(r));
    } else if (r.spec.contains("index")) {
      auto [it, fresh] = first_build.try_emplace(UnitKey(r.spec), r.created_at, r.hash);
      if (!fresh && r.created_at < it->second.first) it->second = {r.created_at, r.hash};
    }
  }
  std::vector<ModelRecord> out;
  for (auto& r : all) {
    const auto it = first_build.find(UnitKey(r.spec));
    if (it != first_build.end() && it->second.second == r.spec.value("unit", "")) out.push_back(std::move(r));
  }
  return out;
}

std::optional<ModelRecord> FindGridCheckpoint(const std::vector<ModelRecord>& checkpoints, const std::string& dataset_sha256,
                                              const std::vector<int64_t>& classes, const std::string& activation,
                                              const std::string& init, int64_t seed, int64_t bin) {
  std::optional<ModelRecord> found;
  const auto key = std::tuple{classes, activation, init, seed};
  for (const auto& r : checkpoints) {
    const int64_t b = r.spec.at("bin").get<int64_t>();
    if (UnitKey(r.spec) != key || b > bin || r.spec.value("dataset_sha256", "") != dataset_sha256) continue;
    if (!found || b > found->spec.at("bin").get<int64_t>()) found = r;
  }
  return found;
}

int64_t ZooUnitsDone(RunStore& store, const ZooGrid& g) {
  std::set<decltype(UnitKey({}))> done;
  for (const auto& r : store.ModelsOfGrid(g.name)) {
    if (r.spec.contains("index") && OfCurrentGrid(r.spec, g)) done.insert(UnitKey(r.spec));
  }
  return static_cast<int64_t>(done.size());
}

std::string ZooListing(RunStore& store, const ZooGrid& g) {
  struct Acc {
    int64_t n = 0;
    double val = 0, test = 0;
    int64_t early = 0;
  };
  std::map<std::tuple<std::string, std::string, int64_t>, Acc> cells;
  const int64_t units = ZooUnitsDone(store, g);
  for (const auto& r : GridCheckpoints(store, g)) {
    Acc& a = cells[{r.spec.at("activation").get<std::string>(), r.spec.at("init").get<std::string>(), r.spec.at("bin").get<int64_t>()}];
    ++a.n;
    a.val += r.metrics.value("val_acc", 0.0);
    a.test += r.metrics.value("test_acc", 0.0);
    a.early += r.metrics.value("early_stopped", false) ? 1 : 0;
  }
  std::string out = fmt::format("zoo grid {} ({}): {} of {} training units built\n", g.name, g.path, units, g.Units());
  out += fmt::format("{:<11} {:<16} {:>6} {:>7} {:>9} {:>9} {:>8}\n", "activation", "init", "epoch", "models", "val acc", "test acc", "stopped");
  for (const auto& [key, a] : cells) {
    const auto& [act, init, bin] = key;
    out += fmt::format("{:<11} {:<16} {:>6} {:>7} {:>8.2f}% {:>8.2f}% {:>8}\n", act, init, bin, a.n, 100 * a.val / a.n,
                       100 * a.test / a.n, a.early);
  }
  return out;
}

int64_t ExportZoo(RunStore& store, const ZooGrid& g, const std::string& format, const std::string& out) {
  if (format != "csv" && format != "pt") throw BadInput(fmt::format("--format {}: expected csv or pt", format));
  std::map<std::string, int64_t> unit_index;  // unit hash → its index in the grid
  for (const auto& r : store.ModelsOfGrid(g.name)) {
    if (r.spec.contains("index")) unit_index[r.hash] = r.spec.at("index").get<int64_t>();
  }
  std::vector<ModelRecord> rows = GridCheckpoints(store, g);
  if (rows.empty()) {
    throw BadInput(fmt::format("zoo grid '{}': nothing built in this results directory (run `transferbench zoo build {}` first)",
                               g.name, g.name));
  }
  // Rows in grid order: unit index, then bin.
  std::sort(rows.begin(), rows.end(), [&](const ModelRecord& a, const ModelRecord& b) {
    return std::pair{unit_index[a.spec.at("unit")], a.spec.at("bin").get<int64_t>()} <
           std::pair{unit_index[b.spec.at("unit")], b.spec.at("bin").get<int64_t>()};
  });
  const ModelSpec spec0{g.arch, g.activations.front(), g.inits.front(), 10};
  ModelPtr probe = MakeModel(spec0);
  nlohmann::json index = nlohmann::json::array();
  int64_t offset = 0;
  for (const auto& item : probe->named_parameters()) {
    index.push_back({{"layer", item.key()}, {"shape", item.value().sizes().vec()}, {"start", offset},
                     {"end", offset + item.value().numel()}});
    offset += item.value().numel();
  }
  std::vector<torch::Tensor> weights;
  std::vector<int64_t> bins, epochs;
  std::vector<double> accs;
  std::vector<std::vector<int64_t>> classes;
  std::vector<std::string> acts, inits;
  for (const auto& r : rows) {
    ModelPtr m = MakeModel(ModelSpec{g.arch, r.spec.at("activation"), r.spec.at("init"), 10});
    LoadModel(*m, r.path);
    std::vector<torch::Tensor> flat;
    for (const auto& p : m->parameters()) flat.push_back(p.detach().reshape({-1}));
    weights.push_back(torch::cat(flat));
    bins.push_back(r.spec.at("bin"));
    epochs.push_back(r.metrics.at("epoch"));
    accs.push_back(r.metrics.at("test_acc"));
    classes.push_back(r.spec.at("classes").get<std::vector<int64_t>>());
    acts.push_back(r.spec.at("activation"));
    inits.push_back(r.spec.at("init"));
  }
  fs::create_directories(fs::absolute(out).parent_path());
  if (format == "pt") {
    torch::serialize::OutputArchive a;
    a.write("weights", torch::stack(weights));
    a.write("bin", torch::tensor(bins, torch::kInt64));
    a.write("epoch", torch::tensor(epochs, torch::kInt64));
    a.write("accuracy", torch::tensor(accs, torch::kDouble));
    torch::Tensor onehot = torch::zeros({static_cast<int64_t>(rows.size()), 10}, torch::kInt64);
    for (size_t i = 0; i < classes.size(); ++i) {
      for (int64_t c : classes[i]) onehot[i][c] = 1;
    }
    a.write("classes", onehot);
    a.save_to(out);
  } else {
    std::ofstream f(out);
    std::string header;
    for (int c = 0; c < 10; ++c) header += fmt::format("class_{},", c);
    for (const auto& a : g.activations) header += "act_" + a + ",";
    for (const auto& i : g.inits) header += "init_" + i + ",";
    for (int64_t w = 0; w < offset; ++w) header += fmt::format("w{},", w);
    f << header << "accuracy,epoch,true_epoch\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      std::string line;
      for (int c = 0; c < 10; ++c) line += std::find(classes[i].begin(), classes[i].end(), c) != classes[i].end() ? "1," : "0,";
      for (const auto& a : g.activations) line += a == acts[i] ? "1," : "0,";
      for (const auto& n : g.inits) line += n == inits[i] ? "1," : "0,";
      const auto w = weights[i].contiguous();
      const float* p = w.data_ptr<float>();
      for (int64_t k = 0; k < w.numel(); ++k) line += fmt::format("{:.9g},", p[k]);  // 9 digits: float32 exactly
      line += fmt::format("{:.9g},{},{}\n", accs[i], bins[i], epochs[i]);
      f << line;
    }
  }
  std::ofstream(out + ".index.json") << nlohmann::json{{"grid", g.name}, {"format", format}, {"rows", rows.size()},
                                                         {"parameters", offset}, {"layers", index}}
                                             .dump(1)
                                      << "\n";
  return static_cast<int64_t>(rows.size());
}

std::pair<torch::Tensor, std::vector<int64_t>> ImportZooCsv(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw BadInput(fmt::format("{}: cannot open", path));
  std::string line;
  std::getline(f, line);
  std::vector<std::string> header;
  {
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) header.push_back(cell);
  }
  size_t first = 0, count = 0;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i].size() > 1 && header[i][0] == 'w' && std::isdigit(static_cast<unsigned char>(header[i][1]))) {
      if (count == 0) first = i;
      ++count;
    }
  }
  const size_t epoch_col = std::find(header.begin(), header.end(), "epoch") - header.begin();
  std::vector<float> values;
  std::vector<int64_t> bins;
  int64_t rows = 0;
  while (std::getline(f, line)) {
    std::stringstream ss(line);
    std::string cell;
    for (size_t i = 0; std::getline(ss, cell, ','); ++i) {
      if (i >= first && i < first + count) values.push_back(std::strtof(cell.c_str(), nullptr));
      if (i == epoch_col) bins.push_back(std::stoll(cell));
    }
    ++rows;
  }
  return {torch::from_blob(values.data(), {rows, static_cast<int64_t>(count)}, torch::kFloat32).clone(), bins};
}

}  // namespace tb
