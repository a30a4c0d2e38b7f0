// Transfer methods: the interface every method shares, and the registry that every method file
// adds itself to with TB_REGISTER_METHOD. A method implements the interface of the protocol it
// runs under (experiments/protocols/: SurgeryMethod for `surgery`), which says what it is given
// and what it returns; the runner knows methods and protocols only through these interfaces.
//
//   struct MyOptions { int64_t k = 24; void Bind(tb::Options& o) { o.Add("k", &k, "..."); } };
//   class MyMethod : public tb::MethodWithOptions<MyOptions, tb::SurgeryMethod> {
//    public:
//     tb::MethodResult Run(tb::MethodContext& ctx) override { ... opts().k ... }
//   };
//   TB_REGISTER_METHOD(my_method, MyMethod, "My method", "Author et al. 2024");
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "store/options.h"
#include "store/registry.h"

namespace tb {

class Method {
 public:
  virtual ~Method() = default;
  virtual Options& options() = 0;
  // The protocol the method runs under (a name in Protocols()).
  virtual std::string protocol() const = 0;
};

// Shared check: BadInput "option=value: expected at least minimum".
void RequireAtLeast(const std::string& option, double value, double minimum);

// The options struct of a method that has none.
struct NoOptions {
  void Bind(Options&) {}
};

// Binds an options struct (with a Bind(Options&) member) to the method's option set; `Interface`
// is the protocol's method interface.
template <class OptionsStruct, class Interface>
class MethodWithOptions : public Interface {
 public:
  MethodWithOptions() { opts_.Bind(options_); }
  MethodWithOptions(const MethodWithOptions&) = delete;  // options_ points into opts_
  MethodWithOptions& operator=(const MethodWithOptions&) = delete;
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
