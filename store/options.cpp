#include "store/options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "store/errors.h"

namespace tb {
namespace {

std::string Show(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

int64_t ParseInt(const std::string& name, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw BadInput(fmt::format("{}={}: expected an integer", name, text));
  }
  return v;
}

double ParseFloat(const std::string& name, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw BadInput(fmt::format("{}={}: expected a number", name, text));
  }
  return v;
}

// nan and inf parse as numbers but are never a setting: JSON stores them as null, so they would
// all hash alike, and no comparison with them means what it says.
double RequireFinite(const std::string& name, const std::string& shown, double v) {
  if (!std::isfinite(v)) throw BadInput(fmt::format("{}={}: expected a finite number", name, shown));
  return v;
}

// "0,1,2" into its items; an empty item (",1", "0,,1", "0,1,") is kept, so that it is an error.
std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  for (size_t comma; (comma = text.find(',', start)) != std::string::npos; start = comma + 1) {
    items.push_back(text.substr(start, comma - start));
  }
  items.push_back(text.substr(start));
  return items;
}

}  // namespace

std::pair<std::string, std::string> SplitAssignment(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw BadInput(fmt::format("'{}': expected key=value", text));
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

Options& Options::AddEntry(Entry entry) {
  if (Has(entry.name)) throw std::logic_error("option declared twice: " + entry.name);
  entries_.push_back(std::move(entry));
  return *this;
}

Options& Options::Add(const std::string& name, int64_t* field, const std::string& help) {
  return AddEntry({name, "int", help, {},
                   [=](const nlohmann::json& v) {
                     if (v.is_number_integer()) {
                       *field = v.get<int64_t>();
                     } else if (v.is_string()) {
                       *field = ParseInt(name, v.get<std::string>());
                     } else {
                       throw BadInput(fmt::format("{}={}: expected an integer", name, Show(v)));
                     }
                   },
                   [=] { return nlohmann::json(*field); }});
}

Options& Options::Add(const std::string& name, double* field, const std::string& help) {
  return AddEntry({name, "float", help, {},
                   [=](const nlohmann::json& v) {
                     if (v.is_number()) {
                       *field = RequireFinite(name, Show(v), v.get<double>());
                     } else if (v.is_string()) {
                       *field = RequireFinite(name, v.get<std::string>(), ParseFloat(name, v.get<std::string>()));
                     } else {
                       throw BadInput(fmt::format("{}={}: expected a number", name, Show(v)));
                     }
                   },
                   [=] { return nlohmann::json(*field); }});
}

Options& Options::Add(const std::string& name, bool* field, const std::string& help) {
  return AddEntry({name, "bool", help, {},
                   [=](const nlohmann::json& v) {
                     if (v.is_boolean()) {
                       *field = v.get<bool>();
                       return;
                     }
                     const std::string t = v.is_string() ? v.get<std::string>() : v.dump();
                     if (t == "true" || t == "1") {
                       *field = true;
                     } else if (t == "false" || t == "0") {
                       *field = false;
                     } else {
                       throw BadInput(fmt::format("{}={}: expected true or false", name, t));
                     }
                   },
                   [=] { return nlohmann::json(*field); }});
}

Options& Options::Add(const std::string& name, std::string* field, const std::string& help,
                      std::vector<std::string> choices) {
  return AddEntry({name, "string", help, choices,
                   [=](const nlohmann::json& v) {
                     if (!v.is_string()) throw BadInput(fmt::format("{}={}: expected a string", name, Show(v)));
                     const auto s = v.get<std::string>();
                     if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
                       throw BadInput(fmt::format("{}={}: expected one of {}", name, s, fmt::join(choices, ", ")));
                     }
                     *field = s;
                   },
                   [=] { return nlohmann::json(*field); }});
}

Options& Options::Add(const std::string& name, std::vector<int64_t>* field, const std::string& help) {
  return AddEntry({name, "int list", help, {},
                   [=](const nlohmann::json& v) {
                     std::vector<int64_t> out;
                     if (v.is_array()) {
                       for (const auto& x : v) {
                         if (!x.is_number_integer()) {
                           throw BadInput(fmt::format("{}={}: expected a list of integers", name, v.dump()));
                         }
                         out.push_back(x.get<int64_t>());
                       }
                     } else if (v.is_string()) {
                       const std::string text = v.get<std::string>();
                       try {
                         for (const auto& item : SplitList(text)) out.push_back(ParseInt(name, item));
                       } catch (const BadInput&) {
                         throw BadInput(fmt::format("{}={}: expected a list of integers such as 0,1,2", name, text));
                       }
                     } else if (v.is_number_integer()) {
                       out.push_back(v.get<int64_t>());
                     } else {
                       throw BadInput(fmt::format("{}={}: expected a list of integers such as 0,1,2", name, Show(v)));
                     }
                     *field = out;
                   },
                   [=] { return nlohmann::json(*field); }});
}

bool Options::Has(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
}

std::vector<std::string> Options::Names() const {
  std::vector<std::string> names;
  for (const auto& e : entries_) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

std::string Options::AcceptedKeys() const { return fmt::format("{}", fmt::join(Names(), ", ")); }

const Options::Entry& Options::Find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return e;
  }
  throw BadInput(fmt::format("unknown option '{}' (accepted: {})", name, AcceptedKeys()));
}

void Options::Set(const std::string& name, const nlohmann::json& value) { Find(name).set(value); }

void Options::SetText(const std::string& name, const std::string& text) {
  const Entry& e = Find(name);
  e.set(nlohmann::json(text));
}

void Options::Apply(const nlohmann::json& object) {
  if (!object.is_object()) throw BadInput(fmt::format("options {}: expected a JSON object", object.dump()));
  for (const auto& [key, value] : object.items()) Set(key, value);
}

nlohmann::json Options::ToJson() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : entries_) out[e.name] = e.get();
  return out;
}

void Options::Merge(const Options& other) {
  for (const auto& e : other.entries_) AddEntry(e);
}

std::string Options::Help() const {
  std::vector<const Entry*> sorted;
  for (const auto& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) { return a->name < b->name; });
  std::string out;
  for (const Entry* e : sorted) {
    out += fmt::format("  {:<24} {:<8} default {:<12} {}", e->name, e->type, Show(e->get()), e->help);
    if (!e->choices.empty()) out += fmt::format(" ({})", fmt::join(e->choices, "|"));
    out += "\n";
  }
  return out;
}

}  // namespace tb
