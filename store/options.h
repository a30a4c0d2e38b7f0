// Typed options with defaults, bound to the fields of a plain struct, set from JSON (suite
// files, stored configs) or from `--set key=value` text. An unknown key, a wrong type or a
// value outside the declared choices is a BadInput naming the key, the value and what was
// expected.
//
//   struct FinetuneOptions {
//     int64_t steps = 100;
//     double lr = 1e-3;
//     void Bind(tb::Options& o) {
//       o.Add("steps", &steps, "optimizer steps on the transfer classes");
//       o.Add("lr", &lr, "Adam learning rate");
//     }
//   };
//   FinetuneOptions opts;  tb::Options o;  opts.Bind(o);
//   o.SetText("steps", "50");           // opts.steps == 50
//   nlohmann::json cfg = o.ToJson();    // {"lr": 0.001, "steps": 50}
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tb {

class Options {
 public:
  Options& Add(const std::string& name, int64_t* field, const std::string& help);
  Options& Add(const std::string& name, double* field, const std::string& help);
  Options& Add(const std::string& name, bool* field, const std::string& help);
  Options& Add(const std::string& name, std::string* field, const std::string& help,
               std::vector<std::string> choices = {});
  Options& Add(const std::string& name, std::vector<int64_t>* field, const std::string& help);

  bool Has(const std::string& name) const;
  std::vector<std::string> Names() const;

  // Sets one option from a JSON value of its type (an integer list also accepts "0,1,2").
  void Set(const std::string& name, const nlohmann::json& value);
  // Sets one option from command-line text, parsed according to the option's type.
  void SetText(const std::string& name, const std::string& text);
  // Sets every key of a JSON object; the first unknown key is an error.
  void Apply(const nlohmann::json& object);

  // Current values, keys sorted.
  nlohmann::json ToJson() const;
  // Appends another set's options (names must not collide).
  void Merge(const Options& other);
  // One line per option: name, type, default (current value), help, choices.
  std::string Help() const;

  // "the accepted keys are a, b, c" for error messages.
  std::string AcceptedKeys() const;

 private:
  struct Entry {
    std::string name;
    std::string type;  // "int", "float", "bool", "string", "int list"
    std::string help;
    std::vector<std::string> choices;
    std::function<void(const nlohmann::json&)> set;
    std::function<nlohmann::json()> get;
  };
  const Entry& Find(const std::string& name) const;
  Options& AddEntry(Entry entry);

  std::vector<Entry> entries_;
};

// Splits "key=value" at the first '='; BadInput if there is none or the key is empty.
std::pair<std::string, std::string> SplitAssignment(const std::string& text);

}  // namespace tb
