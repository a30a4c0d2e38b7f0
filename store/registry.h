// A name -> entry registry for self-registering extension points (methods, losses), in the
// shape of google/benchmark's BENCHMARK macro: each file inserts its factory from a static
// initialiser. Entries need a `name` member.
//
//   tb::Registry<MethodInfo>& methods = tb::Registry<MethodInfo>::Instance("method");
//   methods.Register({"direct_copy", ...});
//   methods.Find("direct_copy");   // BadInput "method 'x': unknown (registered: ...)" if absent
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "store/errors.h"

namespace tb {

template <class Info>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  bool Register(Info info) {
    const std::string name = info.name;
    if (!entries_.emplace(name, std::move(info)).second) {
      throw std::logic_error(fmt::format("{} '{}' registered twice", kind_, name));
    }
    return true;
  }

  const Info& Find(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      throw BadInput(fmt::format("{} '{}': unknown (registered: {})", kind_, name, fmt::join(Names(), ", ")));
    }
    return it->second;
  }

  bool Contains(const std::string& name) const { return entries_.count(name) > 0; }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& entry : entries_) names.push_back(entry.first);
    return names;
  }

 private:
  std::string kind_;
  std::map<std::string, Info> entries_;
};

}  // namespace tb
