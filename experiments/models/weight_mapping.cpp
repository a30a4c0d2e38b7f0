#include "experiments/models/weight_mapping.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/models/sequence.h"
#include "store/errors.h"

namespace tb {
namespace {

using Entries = std::vector<MappingEntry>;

// A recurrent gate's three tensors (W, U, b), source gate → target gate.
void Gate(Entries& e, const std::string& source, const std::string& target) {
  for (const char* part : {".W", ".U", ".b"}) e.push_back({source + part, target + part});
}
void Linear(Entries& e, const std::string& source, const std::string& target) {
  e.push_back({source + ".weight", target + ".weight"});
  e.push_back({source + ".bias", target + ".bias"});
}

// Every family's embedding and head are shared in name and meaning.
Entries Common() {
  Entries e;
  Linear(e, "embed", "embed");
  Linear(e, "head", "head");
  return e;
}

const std::map<std::pair<std::string, std::string>, Entries>& Declared() {
  static const std::map<std::pair<std::string, std::string>, Entries> tables = [] {
    std::map<std::pair<std::string, std::string>, Entries> t;
    // LSTM → CfC: the candidate to CfC's first candidate head (ff1); the forget gate to the
    // interpolation gate's bias head (time_b: σ(t_a Δt + t_b) decides how much of ff2 replaces
    // ff1, as f decides how much of c is kept). CfC's ff2, its time-constant head t_a and its
    // per-unit time constants have no LSTM counterpart and keep their initialisation.
    {
      Entries e = Common();
      Gate(e, "candidate", "ff1");
      Gate(e, "forget_gate", "time_b");
      t[{"lstm", "cfc"}] = e;
    }
    // xLSTM → CfC (the document's pair): the sLSTM's candidate and forget gate, as for the LSTM.
    {
      Entries e = Common();
      Gate(e, "slstm.candidate", "ff1");
      Gate(e, "slstm.forget_gate", "time_b");
      t[{"xlstm", "cfc"}] = e;
    }
    // LSTM → xLSTM: the four gates to the sLSTM's four (the mLSTM keeps its initialisation).
    // xLSTM → LSTM: back.
    {
      Entries e = Common(), back = Common();
      for (const char* g : {"input_gate", "forget_gate", "candidate", "output_gate"}) {
        Gate(e, g, std::string("slstm.") + g);
        Gate(back, std::string("slstm.") + g, g);
      }
      t[{"lstm", "xlstm"}] = e;
      t[{"xlstm", "lstm"}] = back;
    }
    // SSM ↔ Liquid-S4: state matrix, B, C, D and the output gate by name; the SSM's step-size
    // bias (softplus⁻¹ of Δ per channel) and Liquid-S4's log Δ per channel map to each other (the
    // input-dependent part of the SSM's Δ, dt.weight, has no Liquid-S4 counterpart).
    {
      Entries e = Common(), back = Common();
      e.push_back({"A_log", "A_log"});
      back.push_back({"A_log", "A_log"});
      e.push_back({"B.weight", "B"});
      back.push_back({"B", "B.weight"});
      e.push_back({"C.weight", "C"});
      back.push_back({"C", "C.weight"});
      e.push_back({"D", "D"});
      back.push_back({"D", "D"});
      Linear(e, "gate", "gate");
      Linear(back, "gate", "gate");
      e.push_back({"dt.bias", "log_dt"});
      back.push_back({"log_dt", "dt.bias"});
      t[{"ssm", "liquid_s4"}] = e;
      t[{"liquid_s4", "ssm"}] = back;
    }
    return t;
  }();
  return tables;
}

std::map<std::string, torch::Tensor> Parameters(Classifier& model) {
  std::map<std::string, torch::Tensor> out;
  for (auto& item : model.named_parameters()) out[item.key()] = item.value();
  return out;
}

std::map<std::string, std::string> RolesOf(const Classifier& model) {
  std::map<std::string, std::string> out;
  if (const auto* s = dynamic_cast<const SequenceClassifier*>(&model)) {
    for (const auto& [name, role] : s->Roles()) out[name] = role;
  }
  return out;
}

std::string Shape(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

PadMode ParsePadMode(const std::string& option, const std::string& value) {
  if (value == "zero") return PadMode::kZero;
  if (value == "random") return PadMode::kRandom;
  throw BadInput(fmt::format("{}={}: expected zero or random", option, value));
}

std::string DescribeTransform(const std::vector<int64_t>& source, const std::vector<int64_t>& target) {
  std::vector<std::string> steps;
  std::vector<int64_t> s = source;
  if (s.size() < target.size()) {
    steps.push_back(fmt::format("broadcast along {} new dimension(s)", target.size() - s.size()));
  } else if (s.size() > target.size()) {
    steps.push_back(fmt::format("mean over {} extra dimension(s)", s.size() - target.size()));
    s.resize(target.size());
  }
  bool pad = false, truncate = false;
  for (size_t d = 0; d < std::min(s.size(), target.size()); ++d) {
    pad = pad || s[d] < target[d];
    truncate = truncate || s[d] > target[d];
  }
  if (truncate) steps.push_back("truncate");
  if (pad) steps.push_back("pad");
  return steps.empty() ? "copy" : fmt::format("{}", fmt::join(steps, ", "));
}

torch::Tensor TransformShape(const torch::Tensor& source, const torch::Tensor& target_init, PadMode pad) {
  torch::NoGradGuard no_grad;
  torch::Tensor s = source.detach().to(target_init.device(), target_init.scalar_type());
  const int64_t td = target_init.dim();
  bool broadcast = false;
  if (s.dim() > td) {
    std::vector<int64_t> extra;
    for (int64_t d = td; d < s.dim(); ++d) extra.push_back(d);
    s = s.mean(extra);
  } else if (s.dim() < td) {
    broadcast = true;
  }
  torch::Tensor out = pad == PadMode::kZero ? torch::zeros_like(target_init) : target_init.detach().clone();
  // The overlapping block over the source's dimensions (all of them, or the leading ones when
  // the target has more and the source is broadcast along the rest).
  torch::Tensor dst = out;
  torch::Tensor src = s;
  for (int64_t d = 0; d < s.dim(); ++d) {
    const int64_t n = std::min(s.size(d), target_init.size(d));
    dst = dst.narrow(d, 0, n);
    src = src.narrow(d, 0, n);
  }
  if (broadcast) {
    std::vector<int64_t> shape = src.sizes().vec();
    while (static_cast<int64_t>(shape.size()) < td) shape.push_back(1);
    src = src.reshape(shape).expand(dst.sizes());
  }
  dst.copy_(src);
  return out;
}

std::vector<std::pair<std::string, std::string>> BuiltinMappingPairs() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : SequenceFamilies()) out.emplace_back(f, f);
  for (const auto& [pair, entries] : Declared()) out.push_back(pair);
  std::sort(out.begin(), out.end());
  return out;
}

MappingTable BuiltinMapping(const std::string& source_family, const std::string& target_family) {
  MappingTable t;
  t.name = source_family + " → " + target_family;
  if (source_family == target_family) {
    // Every parameter to its namesake: the family's roles, in order (read once per family from a
    // model made without touching torch's generator).
    static std::mutex mutex;
    static std::map<std::string, std::vector<std::string>> names;
    std::lock_guard<std::mutex> lock(mutex);
    auto& list = names[source_family];
    if (list.empty()) {
      GeneratorStateGuard keep;
      ModelPtr m = MakeSequenceModel(ModelSpec{source_family});
      for (const auto& [name, role] : dynamic_cast<SequenceClassifier&>(*m).Roles()) list.push_back(name);
    }
    for (const auto& name : list) t.entries.push_back({name, name});
    return t;
  }
  auto it = Declared().find({source_family, target_family});
  if (it == Declared().end()) {
    std::vector<std::string> pairs;
    for (const auto& [s, g] : BuiltinMappingPairs()) {
      if (s != g) pairs.push_back(s + "→" + g);
    }
    throw BadInput(fmt::format("no declared mapping from {} to {} (declared: {}, and every family to itself; or give "
                               "one as table=src=tgt,...)",
                               source_family, target_family, fmt::join(pairs, ", ")));
  }
  t.entries = it->second;
  return t;
}

MappingTable ParseMapping(const std::string& option, const std::string& text) {
  MappingTable t;
  t.name = option + "=" + text;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string entry = text.substr(start, comma - start);
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
      throw BadInput(fmt::format("{}={}: entry '{}' is not source_parameter=target_parameter", option, text, entry));
    }
    t.entries.push_back({entry.substr(0, eq), entry.substr(eq + 1)});
    start = comma + 1;
  }
  return t;
}

std::string FamilyOf(const Classifier& model, const std::string& option) {
  const auto* s = dynamic_cast<const SequenceClassifier*>(&model);
  if (!s) {
    throw BadInput(fmt::format("{}={}: not a sequence model (expected one of {})", option, model.spec().arch,
                               fmt::join(SequenceFamilies(), ", ")));
  }
  return s->family();
}

void CheckMapping(const MappingTable& table, Classifier& source, Classifier& target, const std::string& option) {
  const auto sp = Parameters(source), tp = Parameters(target);
  auto names = [](const std::map<std::string, torch::Tensor>& p) {
    std::vector<std::string> n;
    for (const auto& [k, v] : p) n.push_back(k);
    return fmt::format("{}", fmt::join(n, ", "));
  };
  std::set<std::string> mapped;
  for (const auto& e : table.entries) {
    if (!sp.count(e.source)) {
      throw BadInput(fmt::format("{} ({}): the source {} has no parameter '{}' (it has {})", option, table.name,
                                 source.spec().arch, e.source, names(sp)));
    }
    if (!tp.count(e.target)) {
      throw BadInput(fmt::format("{} ({}): the target {} has no parameter '{}' (it has {})", option, table.name,
                                 target.spec().arch, e.target, names(tp)));
    }
    if (!mapped.insert(e.target).second) {
      throw BadInput(fmt::format("{} ({}): the target parameter '{}' is mapped twice (expected at most once)", option,
                                 table.name, e.target));
    }
  }
}

std::vector<MappedParameter> DescribeMapping(Classifier& source, Classifier& target, const MappingTable& table) {
  const auto sp = Parameters(source), tp = Parameters(target);
  const auto sr = RolesOf(source), tr = RolesOf(target);
  std::vector<MappedParameter> out;
  for (const auto& e : table.entries) {
    MappedParameter m;
    m.source = e.source;
    m.target = e.target;
    m.source_role = sr.count(e.source) ? sr.at(e.source) : "";
    m.target_role = tr.count(e.target) ? tr.at(e.target) : "";
    m.source_shape = sp.at(e.source).sizes().vec();
    m.target_shape = tp.at(e.target).sizes().vec();
    m.transform = DescribeTransform(m.source_shape, m.target_shape);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<MappedParameter> ApplyMapping(Classifier& source, Classifier& target, const MappingTable& table,
                                          PadMode pad, const std::function<torch::Tensor(const torch::Tensor&)>& transform) {
  auto out = DescribeMapping(source, target, table);
  const auto sp = Parameters(source);
  auto tp = Parameters(target);
  torch::NoGradGuard no_grad;
  for (const auto& e : table.entries) {
    torch::Tensor s = sp.at(e.source).detach();
    if (transform) s = transform(s);
    tp.at(e.target).copy_(TransformShape(s, tp.at(e.target), pad));
  }
  return out;
}

std::string FormatMapping(const MappingTable& table, const std::vector<MappedParameter>& mapped) {
  std::string out = fmt::format("mapping {} ({} entries):\n", table.name, mapped.size());
  for (const auto& m : mapped) {
    out += fmt::format("  {:<16} {:<22} {:<12} → {:<16} {:<22} {:<12} {}\n", m.source_role, m.source,
                       Shape(m.source_shape), m.target_role, m.target, Shape(m.target_shape), m.transform);
  }
  return out;
}

torch::Tensor LowRank(const torch::Tensor& m, int64_t rank) {
  if (rank < 1) throw BadInput(fmt::format("rank={}: expected at least 1", rank));
  if (m.dim() != 2) return m;
  rank = std::min(rank, std::min(m.size(0), m.size(1)));
  auto [u, s, vh] = torch::linalg_svd(m.to(torch::kDouble), /*full_matrices=*/false);
  auto approx = torch::matmul(u.narrow(1, 0, rank) * s.narrow(0, 0, rank), vh.narrow(0, 0, rank));
  return approx.to(m.scalar_type());
}

}  // namespace tb
