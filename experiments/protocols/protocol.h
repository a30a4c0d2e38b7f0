// Study protocols: how a run of a protocol's methods is set up, executed and judged. A protocol
// owns its scenario options, the zoo models it asks for, the interface its methods implement,
// its evaluation and the metrics it logs; it registers itself with TB_REGISTER_PROTOCOL. The
// runner holds the run-level options every protocol shares (seed, source, threads, device),
// and otherwise knows a protocol only through ProtocolRun: it never asks which one it is.
//
//   const tb::ProtocolInfo& p = tb::Protocols().Find(method->protocol());
//   std::unique_ptr<tb::ProtocolRun> run = p.make();
//   all.Merge(run->options());                 // its scenario options, with defaults
//   run->CheckScenario();                      // before anything is trained or stored
//   run->CheckMethod(*method, "direct_copy");
//   tb::MetricMap summary = run->Execute(*method, ctx);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "experiments/methods/method.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/train/trainer.h"
#include "experiments/train/zoo.h"
#include "store/logger.h"
#include "store/options.h"
#include "store/registry.h"
#include "store/run_store.h"

namespace tb {

struct ResultPaths {
  std::string results_dir;
  std::string store_path() const { return results_dir + "/runs.db"; }
  std::string zoo_dir() const { return results_dir + "/zoo"; }
  std::string reports_dir() const { return results_dir + "/reports"; }
};

// What every protocol's run is given by the runner, for the length of Execute only (it holds
// references: a protocol keeps none of it).
struct ProtocolContext {
  const ResultPaths& paths;
  RunStore& store;
  RunLogger& log;
  torch::Device device;
  int64_t seed;
  std::string source;  // the run-level control: trained, random or shuffled
  std::string method;  // the method's registered name (its diagnostics are logged as <method>/<key>)
  std::string blas;    // the BLAS library and kernel in use (BlasIdentity): part of every zoo key
};

// One run's protocol side: its scenario options (bound to fields, so `options()` is set before
// `Check`), and what it does with a method of its interface.
class ProtocolRun {
 public:
  virtual ~ProtocolRun() = default;
  virtual Options& options() = 0;
  // A shorthand the protocol accepts beside its options (e.g. arch=X for arch_a and arch_b);
  // false when `key` is none of them.
  virtual bool SetShorthand(const std::string& key, const nlohmann::json& value, Options& all) { return false; }
  // Validates the scenario's options (BadInput naming the value) and may put the scenario in
  // canonical form; then, separately, the method against the scenario. Nothing is trained or
  // stored by either.
  virtual void CheckScenario() = 0;
  virtual void CheckMethod(Method& method, const std::string& method_name) = 0;
  // The run's seed against the scenario (e.g. a zoo grid that has models of some seeds only);
  // after CheckScenario.
  virtual void CheckSeed(int64_t seed) {}
  // Loads what identifies the run's data; returns config entries beside the options (e.g.
  // dataset_sha256), part of the config hash.
  virtual nlohmann::json Identity() = 0;
  virtual std::string ScenarioName() const = 0;  // e.g. "A0123-B2345-T4"
  virtual std::string Dataset() const = 0;
  virtual std::string Label() const = 0;         // for progress lines, e.g. "mnist wide→wide"
  // Lines for `exp_<method> --help` about what the method does under this protocol.
  virtual std::string Describe(const Method& method) const { return ""; }
  // What a run of `method` would do, for --dry-run (after CheckScenario and CheckMethod): e.g. a
  // weight mapping with its shapes. Nothing is trained or stored.
  virtual std::string DryRun(Method& method) { return ""; }
  // Trains or loads the zoo models it needs, runs the method, evaluates; returns the summary
  // (glossary metrics and the method's diagnostics). Throws BadInput for bad input found late.
  virtual MetricMap Execute(Method& method, ProtocolContext& ctx) = 0;
};

// The run-level source control (DESIGN.md, "Control") applied to a zoo model, whose knowledge it
// destroys while keeping its statistics: trained → an untouched copy (a method may not change the
// zoo's model), random → a fresh model of the same spec (seeded with seed + 7777), shuffled →
// every parameter tensor's entries permuted (seeded with seed · 7919 + the tensor's index).
ModelPtr SourceControl(const ModelPtr& source, const std::string& control, uint64_t seed, torch::Device device);

// Shared scenario checks (BadInput naming the value): a class list of distinct classes 0..9,
// and training options (prefix e.g. "train.").
void CheckClassList(const std::string& name, const std::vector<int64_t>& classes);
void CheckTrainOptions(const TrainOptions& train, const std::string& prefix);
// `key`=`arch` names a registered architecture of the kinds a protocol takes: any, an image
// model only (MLP or CNN: the protocols that address layers by position), or a sequence model
// only (with an optional width).
enum class ArchKind { kAny, kImage, kSequence };
void CheckArchitecture(const std::string& key, const std::string& arch, ArchKind kind = ArchKind::kAny);

// A zoo request for a protocol's model: the run's device, intra-op threads and BLAS (part of
// every zoo key); init_seed -1: the initial weights follow `seed`.
ZooRequest ProtocolZooRequest(const Dataset& dataset, const ModelSpec& model, const std::vector<int64_t>& classes,
                              uint64_t seed, int64_t init_seed, const TrainOptions& train, int64_t train_per_class,
                              const ProtocolContext& ctx);

struct ProtocolInfo {
  std::string name;
  std::string description;
  std::function<std::unique_ptr<ProtocolRun>()> make;
};

using ProtocolRegistry = Registry<ProtocolInfo>;
ProtocolRegistry& Protocols();

#define TB_REGISTER_PROTOCOL(name, Class, description)                              \
  static const bool tb_protocol_registered_##name = ::tb::Protocols().Register( \
      {#name, description, [] { return std::unique_ptr<::tb::ProtocolRun>(new Class()); }})

}  // namespace tb
