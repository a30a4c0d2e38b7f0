// The `surgery` protocol: target A trained on S_A and source B on S_B (both from the zoo), B
// replaced by its control when the run asks for one (source=random|shuffled), the method edits
// a copy of A into A', optional calibration (calibrate=control), and A and A' evaluated once on
// the test split of S_A ∪ S_B: the transfer metrics of the glossary. The interface its methods
// implement is SurgeryMethod.
//
//   class MyMethod : public tb::MethodWithOptions<MyOptions, tb::SurgeryMethod> {
//     tb::MethodResult Run(tb::MethodContext& ctx) override;   // A' from ctx.target, ctx.source
//   };
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/methods/method.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "experiments/train/trainer.h"
#include "store/logger.h"
#include "store/options.h"

namespace tb {

// The scenario's data, as the methods see it. Splits hold only the named classes.
struct ScenarioData {
  const Dataset* dataset = nullptr;
  ScenarioClasses classes;
  Split a_train, a_val;    // S_A: what A was trained and validated on
  Split b_train, b_val;    // S_B: what B was trained and validated on
  Split transfer_train;    // T samples of the training split (labelled new-class data)
  Split test;              // test samples of S_A ∪ S_B
};

struct MethodContext {
  const ScenarioData& data;
  ModelPtr target;  // A' to be: a copy of A that the method may change in place
  ModelPtr source;  // B, or its control
  torch::Device device;
  RunLogger& log;
  uint64_t seed;
  // Where a method caches what it derives from the zoo models alone (an SAE of A, say), keyed
  // by everything that determines it; "" for no cache. `machine` names what changes float
  // results besides the inputs (device, threads, BLAS kernel), for those keys.
  std::string cache_dir;
  std::string machine;
};

struct MethodResult {
  ModelPtr model;            // A'
  MetricMap diagnostics;     // method-specific values, logged to the run's summary
};

// What a method can check before anything is trained or stored: the models' shapes and its
// own options. A problem is a BadInput naming the value and what was expected.
struct MethodCheck {
  ModelSpec target, source;
  int64_t target_width = 0, source_width = 0;  // penultimate features
  std::vector<std::string> target_layers, source_layers;
  ScenarioClasses classes;
};

// A method of the surgery protocol: gets the scenario's data and the two zoo models, B already
// replaced by its control, and returns the modified target A' with diagnostics. The protocol
// evaluates A and A' and logs the glossary's metrics; a method logs only its own.
class SurgeryMethod : public Method {
 public:
  std::string protocol() const override { return "surgery"; }
  virtual void Check(const MethodCheck& check) const {}
  // Whether the method moves several transfer classes at once, each sample toward its own
  // class. Those that build one class's circuit or concept declare false, and the protocol
  // refuses `transfer` with more than one class for them before anything is trained.
  virtual bool SeveralTransferClasses() const { return false; }
  virtual MethodResult Run(MethodContext& ctx) = 0;
};

// Shared check: A's and B's penultimate widths are equal (copying a head row needs it).
void RequireEqualWidths(const std::string& what, const MethodCheck& check);

// The surgery protocol's scenario options. `arch=X` sets arch_a and arch_b; `pair=B:A` sets
// arch_b (the source) and arch_a (the target).
struct SurgeryScenario {
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  int64_t train_per_class = 0;
  std::vector<int64_t> classes_a{0, 1, 2, 3};
  std::vector<int64_t> classes_b{2, 3, 4, 5};
  std::vector<int64_t> transfer{4};
  std::string arch_a = "wide";
  std::string arch_b = "wide";
  std::string activation = "relu";
  std::string init = "default";
  std::string calibrate = "none";
  double calibrate_threshold = 0.97;
  double calibrate_max_shift = 50;
  TrainOptions train;

  void Bind(Options& o);
  // "A0123-B2345-T4"
  std::string ScenarioName() const;
};

}  // namespace tb
