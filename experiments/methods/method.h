// Transfer methods: the interface, the context a method runs in, and the registry that
// every method file adds itself to with TB_REGISTER_METHOD.
//
//   struct MyOptions { int64_t k = 24; void Bind(tb::Options& o) { o.Add("k", &k, "..."); } };
//   class MyMethod : public tb::MethodWithOptions<MyOptions> {
//    public:
//     tb::MethodResult Run(tb::MethodContext& ctx) override { ... opts().k ... }
//   };
//   TB_REGISTER_METHOD(my_method, MyMethod, "My method", "Author et al. 2024");
//
// A method gets the scenario's data and the two zoo models, B already replaced by its control
// when the run asks for one, and returns the modified target A' with diagnostics. The runner
// evaluates A and A' and logs the glossary's metrics; a method logs only its own.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/data/dataset.h"
#include "experiments/metrics/transfer.h"
#include "experiments/models/model.h"
#include "store/logger.h"
#include "store/options.h"
#include "store/registry.h"

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

class Method {
 public:
  virtual ~Method() = default;
  virtual Options& options() = 0;
  virtual void Check(const MethodCheck& check) const {}
  // Whether the method moves several transfer classes at once, each sample toward its own
  // class. Those that build one class's circuit or concept declare false, and the runner
  // refuses `transfer` with more than one class for them before anything is trained.
  virtual bool SeveralTransferClasses() const { return false; }
  virtual MethodResult Run(MethodContext& ctx) = 0;
};

// Shared checks.
void RequireEqualWidths(const std::string& what, const MethodCheck& check);
void RequireAtLeast(const std::string& option, double value, double minimum);

// Binds an options struct (with a Bind(Options&) member) to the method's option set.
template <class OptionsStruct>
class MethodWithOptions : public Method {
 public:
  MethodWithOptions() { opts_.Bind(options_); }
  Options& options() override { return options_; }
  const OptionsStruct& opts() const { return opts_; }

 protected:
  // For a registered variant that changes defaults (before any option is set).
  OptionsStruct& mutable_opts() { return opts_; }

 private:
  OptionsStruct opts_;
  Options options_;
};

struct MethodInfo {
  std::string name;
  std::string display_name;
  std::string reference;
  std::function<std::unique_ptr<Method>()> make;
};

using MethodRegistry = Registry<MethodInfo>;
// The registry of transfer methods (constructed on first use, so static initialisers in any
// translation unit may register).
MethodRegistry& Methods();

#define TB_REGISTER_METHOD(name, Class, display, reference)                                   \
  static const bool tb_method_registered_##name = ::tb::Methods().Register( \
      {#name, display, reference, [] { return std::unique_ptr<::tb::Method>(new Class()); }})

}  // namespace tb
