#include "experiments/models/sequence.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/data/dataset.h"
#include "store/errors.h"

namespace tb {
namespace {

constexpr int64_t kSteps = 28;     // an image's rows
constexpr int64_t kFeatures = 28;  // each row's pixels
constexpr int64_t kDefaultWidth = 64;

torch::Tensor Uniform(std::vector<int64_t> shape, double bound) {
  return torch::empty(shape).uniform_(-bound, bound);
}

// One gate (or candidate) of a recurrent cell: W x + U h + b, U absent for a gate that sees the
// input only (mLSTM's).
struct GateImpl : torch::nn::Module {
  GateImpl(int64_t out, int64_t in, int64_t hidden, bool recurrent, double bound) {
    W = register_parameter("W", Uniform({out, in}, bound));
    if (recurrent) U = register_parameter("U", Uniform({out, hidden}, bound));
    b = register_parameter("b", Uniform({out}, bound));
  }
  torch::Tensor W, U, b;
};
TORCH_MODULE(Gate);

// The named gates' input projections of a whole sequence at once ([N, T, in] → [N, T, k·out]) and
// their recurrent matrices stacked ([k·out, hidden]), for one matmul per step.
torch::Tensor InputProjection(const std::vector<Gate>& gates, const torch::Tensor& x) {
  std::vector<torch::Tensor> w, b;
  for (const auto& g : gates) {
    w.push_back(g->W);
    b.push_back(g->b);
  }
  return torch::matmul(x, torch::cat(w).t()) + torch::cat(b);
}
torch::Tensor RecurrentMatrix(const std::vector<Gate>& gates) {
  std::vector<torch::Tensor> u;
  for (const auto& g : gates) u.push_back(g->U);
  return torch::cat(u).t();
}

using RoleList = std::vector<std::pair<std::string, std::string>>;

// The roles of a recurrent gate's parameters: W and b the gate's own, U the recurrent matrix.
void GateRoles(RoleList& roles, const std::string& prefix, const std::string& role, bool recurrent) {
  roles.emplace_back(prefix + ".W", role);
  if (recurrent) roles.emplace_back(prefix + ".U", "recurrent");
  roles.emplace_back(prefix + ".b", role);
}

class LstmModel : public SequenceClassifier {
 public:
  LstmModel(ModelSpec spec, int64_t h) : SequenceClassifier(std::move(spec), "lstm", h) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(h));
    for (const char* name : {"input_gate", "forget_gate", "candidate", "output_gate"}) {
      gates_.push_back(register_module(name, Gate(h, h, h, true, bound)));
    }
    head = register_module("head", torch::nn::Linear(h, spec_.num_classes));
    layer_names_ = {"lstm"};
  }
  RoleList Roles() const override {
    RoleList r = {{"embed.weight", "embedding"}, {"embed.bias", "embedding"}};
    GateRoles(r, "input_gate", "input_gate", true);
    GateRoles(r, "forget_gate", "forget_gate", true);
    GateRoles(r, "candidate", "candidate", true);
    GateRoles(r, "output_gate", "output_gate", true);
    r.emplace_back("head.weight", "head");
    r.emplace_back("head.bias", "head");
    return r;
  }

 protected:
  std::vector<torch::Tensor> Layers(const torch::Tensor& x) override {
    const auto xp = InputProjection(gates_, x);
    const auto u = RecurrentMatrix(gates_);
    auto h = torch::zeros({x.size(0), width_}, x.options());
    auto c = torch::zeros_like(h);
    std::vector<torch::Tensor> hs;
    for (int64_t t = 0; t < x.size(1); ++t) {
      auto z = (xp.select(1, t) + torch::matmul(h, u)).chunk(4, 1);
      c = torch::sigmoid(z[1]) * c + torch::sigmoid(z[0]) * torch::tanh(z[2]);
      h = torch::sigmoid(z[3]) * torch::tanh(c);
      hs.push_back(h);
    }
    return {torch::stack(hs, 1)};
  }

 private:
  std::vector<Gate> gates_;
};

class XlstmModel : public SequenceClassifier {
 public:
  XlstmModel(ModelSpec spec, int64_t h) : SequenceClassifier(std::move(spec), "xlstm", h) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(h));
    slstm_ = register_module("slstm", std::make_shared<torch::nn::Module>());
    for (const char* name : {"input_gate", "forget_gate", "candidate", "output_gate"}) {
      s_gates_.push_back(slstm_->register_module(name, Gate(h, h, h, true, bound)));
    }
    mlstm_ = register_module("mlstm", std::make_shared<torch::nn::Module>());
    for (const char* name : {"query", "key", "value"}) {
      qkv_.push_back(mlstm_->register_module(name, torch::nn::Linear(torch::nn::LinearOptions(h, h).bias(false))));
    }
    m_input_ = mlstm_->register_module("input_gate", Gate(1, h, h, false, bound));
    m_forget_ = mlstm_->register_module("forget_gate", Gate(1, h, h, false, bound));
    m_output_ = mlstm_->register_module("output_gate", Gate(h, h, h, false, bound));
    {
      // A forget gate that starts open (xLSTM's initialisation: bias 3 and up).
      torch::NoGradGuard no_grad;
      m_forget_->b.fill_(3.0);
    }
    head = register_module("head", torch::nn::Linear(h, spec_.num_classes));
    layer_names_ = {"slstm", "mlstm"};
  }
  RoleList Roles() const override {
    RoleList r = {{"embed.weight", "embedding"}, {"embed.bias", "embedding"}};
    GateRoles(r, "slstm.input_gate", "input_gate", true);
    GateRoles(r, "slstm.forget_gate", "forget_gate", true);
    GateRoles(r, "slstm.candidate", "candidate", true);
    GateRoles(r, "slstm.output_gate", "output_gate", true);
    r.emplace_back("mlstm.query.weight", "memory");
    r.emplace_back("mlstm.key.weight", "memory");
    r.emplace_back("mlstm.value.weight", "memory");
    GateRoles(r, "mlstm.input_gate", "input_gate", false);
    GateRoles(r, "mlstm.forget_gate", "forget_gate", false);
    GateRoles(r, "mlstm.output_gate", "output_gate", false);
    r.emplace_back("head.weight", "head");
    r.emplace_back("head.bias", "head");
    return r;
  }

 protected:
  std::vector<torch::Tensor> Layers(const torch::Tensor& x) override {
    const int64_t n = x.size(0), steps = x.size(1);
    // sLSTM, stabilised in log space.
    const auto xp = InputProjection(s_gates_, x);
    const auto u = RecurrentMatrix(s_gates_);
    auto h = torch::zeros({n, width_}, x.options());
    auto c = torch::zeros_like(h), nrm = torch::zeros_like(h), m = torch::zeros_like(h);
    std::vector<torch::Tensor> hs;
    for (int64_t t = 0; t < steps; ++t) {
      auto z = (xp.select(1, t) + torch::matmul(h, u)).chunk(4, 1);
      auto m_new = torch::maximum(z[1] + m, z[0]);
      auto i = torch::exp(z[0] - m_new);
      auto f = torch::exp(z[1] + m - m_new);
      c = f * c + i * torch::tanh(z[2]);
      nrm = f * nrm + i;
      h = torch::sigmoid(z[3]) * c / (nrm + 1e-6);
      m = m_new;
      hs.push_back(h);
    }
    const auto hs_seq = torch::stack(hs, 1);  // [N, T, H]
    // mLSTM over the sLSTM's outputs: matrix memory, one head.
    const auto q = qkv_[0]->forward(hs_seq);
    const auto k = qkv_[1]->forward(hs_seq) / std::sqrt(static_cast<double>(width_));
    const auto v = qkv_[2]->forward(hs_seq);
    const auto ig = torch::matmul(hs_seq, m_input_->W.t()) + m_input_->b;    // [N, T, 1]
    // log f: a log-sigmoid forget gate (xLSTM's mLSTM), open at init (bias 3: f ≈ 0.95).
    const auto fg = torch::log_sigmoid(torch::matmul(hs_seq, m_forget_->W.t()) + m_forget_->b);  // [N, T, 1]
    const auto og = torch::sigmoid(torch::matmul(hs_seq, m_output_->W.t()) + m_output_->b);
    auto mem = torch::zeros({n, width_, width_}, x.options());
    auto nv = torch::zeros({n, width_}, x.options());
    auto mm = torch::zeros({n, 1}, x.options());
    std::vector<torch::Tensor> hms;
    for (int64_t t = 0; t < steps; ++t) {
      auto it = ig.select(1, t), ft = fg.select(1, t);
      auto m_new = torch::maximum(ft + mm, it);
      auto i = torch::exp(it - m_new), f = torch::exp(ft + mm - m_new);
      auto kt = k.select(1, t), vt = v.select(1, t), qt = q.select(1, t);
      mem = f.unsqueeze(2) * mem + i.unsqueeze(2) * (vt.unsqueeze(2) * kt.unsqueeze(1));
      nv = f * nv + i * kt;
      auto num = torch::bmm(mem, qt.unsqueeze(2)).squeeze(2);
      auto den = torch::maximum((nv * qt).sum(1, true).abs(), torch::exp(-m_new));
      hms.push_back(og.select(1, t) * num / den);
      mm = m_new;
    }
    return {hs_seq, hs_seq + torch::stack(hms, 1)};
  }

 private:
  std::shared_ptr<torch::nn::Module> slstm_, mlstm_;
  std::vector<Gate> s_gates_;
  std::vector<torch::nn::Linear> qkv_;
  Gate m_input_{nullptr}, m_forget_{nullptr}, m_output_{nullptr};
};

class CfcModel : public SequenceClassifier {
 public:
  CfcModel(ModelSpec spec, int64_t h) : SequenceClassifier(std::move(spec), "cfc", h) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(h));
    for (const char* name : {"ff1", "ff2", "time_a", "time_b"}) {
      gates_.push_back(register_module(name, Gate(h, h, h, true, bound)));
    }
    // softplus(0.5413) = 1: a unit time step at initialisation.
    time_constant = register_parameter("time_constant", torch::full({h}, std::log(std::exp(1.0) - 1.0)));
    head = register_module("head", torch::nn::Linear(h, spec_.num_classes));
    layer_names_ = {"cfc"};
  }
  RoleList Roles() const override {
    RoleList r = {{"embed.weight", "embedding"}, {"embed.bias", "embedding"}};
    GateRoles(r, "ff1", "candidate", true);
    GateRoles(r, "ff2", "candidate", true);
    GateRoles(r, "time_a", "time_constants", true);
    GateRoles(r, "time_b", "forget_gate", true);
    r.emplace_back("time_constant", "time_constants");
    r.emplace_back("head.weight", "head");
    r.emplace_back("head.bias", "head");
    return r;
  }

  torch::Tensor time_constant;

 protected:
  std::vector<torch::Tensor> Layers(const torch::Tensor& x) override {
    const auto xp = InputProjection(gates_, x);
    const auto u = RecurrentMatrix(gates_);
    const auto dt = torch::softplus(time_constant);
    auto h = torch::zeros({x.size(0), width_}, x.options());
    std::vector<torch::Tensor> hs;
    for (int64_t t = 0; t < x.size(1); ++t) {
      auto z = (xp.select(1, t) + torch::matmul(h, u)).chunk(4, 1);
      auto gate = torch::sigmoid(z[2] * dt + z[3]);
      h = torch::tanh(z[0]) * (1 - gate) + gate * torch::tanh(z[1]);
      hs.push_back(h);
    }
    return {torch::stack(hs, 1)};
  }

 private:
  std::vector<Gate> gates_;
};

// Step sizes log-uniform in [0.001, 0.1], as Mamba and S4D initialise them.
torch::Tensor InitialStepSizes(int64_t e) {
  return torch::exp(torch::rand({e}) * (std::log(0.1) - std::log(0.001)) + std::log(0.001));
}
// S4D-Real: A_n = -(n + 1), stored as log(n + 1).
torch::Tensor InitialALog(int64_t e) {
  return torch::log(torch::arange(1, kStateSize + 1, torch::kFloat)).repeat({e, 1});
}

class SsmModel : public SequenceClassifier {
 public:
  SsmModel(ModelSpec spec, int64_t e) : SequenceClassifier(std::move(spec), "ssm", e) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(e));
    dt = register_module("dt", torch::nn::Linear(e, e));
    {
      torch::NoGradGuard no_grad;
      dt->weight.uniform_(-0.1 * bound, 0.1 * bound);
      const auto step = InitialStepSizes(e);
      dt->bias.copy_(step + torch::log(-torch::expm1(-step)));  // softplus⁻¹
    }
    A_log = register_parameter("A_log", InitialALog(e));
    B = register_module("B", torch::nn::Linear(torch::nn::LinearOptions(e, kStateSize).bias(false)));
    C = register_module("C", torch::nn::Linear(torch::nn::LinearOptions(e, kStateSize).bias(false)));
    D = register_parameter("D", torch::ones({e}));
    gate = register_module("gate", torch::nn::Linear(e, e));
    head = register_module("head", torch::nn::Linear(e, spec_.num_classes));
    layer_names_ = {"ssm"};
  }
  RoleList Roles() const override {
    return {{"embed.weight", "embedding"}, {"embed.bias", "embedding"}, {"dt.weight", "time_constants"},
            {"dt.bias", "time_constants"},  {"A_log", "recurrent"},     {"B.weight", "state"},
            {"C.weight", "state"},          {"D", "state"},             {"gate.weight", "output_gate"},
            {"gate.bias", "output_gate"},   {"head.weight", "head"},    {"head.bias", "head"}};
  }

  torch::nn::Linear dt{nullptr}, B{nullptr}, C{nullptr}, gate{nullptr};
  torch::Tensor A_log, D;

 protected:
  std::vector<torch::Tensor> Layers(const torch::Tensor& x) override {
    const auto delta = torch::softplus(dt->forward(x));  // [N, T, E]
    const auto b = B->forward(x), c = C->forward(x);    // [N, T, S]
    const auto z = torch::silu(gate->forward(x));
    const auto a = -torch::exp(A_log);                  // [E, S]
    auto h = torch::zeros({x.size(0), width_, kStateSize}, x.options());
    std::vector<torch::Tensor> ys;
    for (int64_t t = 0; t < x.size(1); ++t) {
      auto d = delta.select(1, t).unsqueeze(2);  // [N, E, 1]
      auto xt = x.select(1, t);
      h = torch::exp(d * a) * h + d * b.select(1, t).unsqueeze(1) * xt.unsqueeze(2);
      ys.push_back(((h * c.select(1, t).unsqueeze(1)).sum(2) + D * xt) * z.select(1, t));
    }
    return {torch::stack(ys, 1)};
  }
};

class LiquidS4Model : public SequenceClassifier {
 public:
  LiquidS4Model(ModelSpec spec, int64_t e) : SequenceClassifier(std::move(spec), "liquid_s4", e) {
    log_dt = register_parameter("log_dt", torch::log(InitialStepSizes(e)));
    A_log = register_parameter("A_log", InitialALog(e));
    B = register_parameter("B", torch::ones({kStateSize, e}));
    C = register_parameter("C", torch::randn({kStateSize, e}) * std::sqrt(0.5));
    D = register_parameter("D", torch::ones({e}));
    gate = register_module("gate", torch::nn::Linear(e, e));
    head = register_module("head", torch::nn::Linear(e, spec_.num_classes));
    layer_names_ = {"liquid_s4"};
  }
  RoleList Roles() const override {
    return {{"embed.weight", "embedding"}, {"embed.bias", "embedding"}, {"log_dt", "time_constants"},
            {"A_log", "recurrent"},        {"B", "state"},              {"C", "state"},
            {"D", "state"},                {"gate.weight", "output_gate"}, {"gate.bias", "output_gate"},
            {"head.weight", "head"},       {"head.bias", "head"}};
  }

  torch::nn::Linear gate{nullptr};
  torch::Tensor log_dt, A_log, B, C, D;

 protected:
  std::vector<torch::Tensor> Layers(const torch::Tensor& x) override {
    const auto a = -torch::exp(A_log);                     // [E, S]
    const auto delta = torch::exp(log_dt).unsqueeze(1);    // [E, 1]
    const auto a_bar = torch::exp(delta * a);              // [E, S]
    const auto b_bar = (a_bar - 1) / a * B.t();            // ZOH, [E, S]
    const auto z = torch::silu(gate->forward(x));
    const auto c = C.t();
    auto h = torch::zeros({x.size(0), width_, kStateSize}, x.options());
    std::vector<torch::Tensor> ys;
    for (int64_t t = 0; t < x.size(1); ++t) {
      auto xt = x.select(1, t);
      auto bu = b_bar * xt.unsqueeze(2);  // [N, E, S]
      h = (a_bar + bu) * h + bu;           // the liquid, input-dependent transition
      ys.push_back(((h * c).sum(2) + D * xt) * z.select(1, t));
    }
    return {torch::stack(ys, 1)};
  }
};

const std::map<std::string, ModelPtr (*)(const ModelSpec&, int64_t)>& Factories() {
  static const std::map<std::string, ModelPtr (*)(const ModelSpec&, int64_t)> f = {
      {"cfc", [](const ModelSpec& s, int64_t w) -> ModelPtr { return std::make_shared<CfcModel>(s, w); }},
      {"liquid_s4", [](const ModelSpec& s, int64_t w) -> ModelPtr { return std::make_shared<LiquidS4Model>(s, w); }},
      {"lstm", [](const ModelSpec& s, int64_t w) -> ModelPtr { return std::make_shared<LstmModel>(s, w); }},
      {"ssm", [](const ModelSpec& s, int64_t w) -> ModelPtr { return std::make_shared<SsmModel>(s, w); }},
      {"xlstm", [](const ModelSpec& s, int64_t w) -> ModelPtr { return std::make_shared<XlstmModel>(s, w); }},
  };
  return f;
}

}  // namespace

const std::vector<std::string>& ParameterRoleNames() {
  static const std::vector<std::string> names = {"input_gate", "forget_gate", "output_gate",    "candidate",
                                                 "recurrent",  "memory",      "time_constants", "state",
                                                 "embedding",  "head"};
  return names;
}

SequenceClassifier::SequenceClassifier(ModelSpec spec, std::string family, int64_t width)
    : Classifier(std::move(spec)), family_(std::move(family)), width_(width) {
  embed = register_module("embed", torch::nn::Linear(spec_.vocab > 0 ? spec_.vocab : kFeatures, width));
}

torch::Tensor SequenceClassifier::Embed(const torch::Tensor& inputs) {
  if (spec_.vocab > 0) {
    if (inputs.dim() != 2 || inputs.scalar_type() != torch::kInt64) {
      throw std::invalid_argument(fmt::format("a language model takes symbol ids [N, T] (int64), not [{}] {}",
                                              fmt::join(inputs.sizes(), ", "), c10::toString(inputs.scalar_type())));
    }
    return torch::embedding(embed->weight.t(), inputs) + embed->bias;
  }
  const auto steps = inputs.dim() == 3 ? inputs : AsSequence(inputs.reshape({inputs.size(0), 1, kSteps, kFeatures}));
  return embed->forward(steps);
}

std::vector<torch::Tensor> SequenceClassifier::HiddenActivations(const torch::Tensor& images) {
  std::vector<torch::Tensor> last;
  for (const auto& layer : Layers(Embed(images))) last.push_back(layer.select(1, layer.size(1) - 1));
  return last;
}

torch::Tensor SequenceClassifier::StepFeatures(const torch::Tensor& inputs) { return Layers(Embed(inputs)).back(); }

std::vector<std::string> SequenceFamilies() {
  std::vector<std::string> names;
  for (const auto& [name, make] : Factories()) names.push_back(name);
  return names;
}

bool IsSequenceArch(const std::string& arch) {
  for (const auto& family : SequenceFamilies()) {
    if (arch.compare(0, family.size(), family) != 0) continue;
    const std::string rest = arch.substr(family.size());
    if (rest.empty()) return true;
    if (std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }) && rest.size() <= 6) {
      return true;
    }
  }
  return false;
}

std::pair<std::string, int64_t> ParseSequenceArch(const std::string& arch) {
  // The longest family that prefixes the name (none is a prefix of another today).
  for (const auto& family : SequenceFamilies()) {
    if (arch.compare(0, family.size(), family) != 0) continue;
    const std::string rest = arch.substr(family.size());
    if (rest.empty()) return {family, kDefaultWidth};
    if (!std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }) || rest.size() > 6) continue;
    const int64_t width = std::stoll(rest);
    if (width < 1 || width > 4096) {
      throw BadInput(fmt::format("architecture '{}': width {} outside 1..4096", arch, width));
    }
    return {family, width};
  }
  throw BadInput(fmt::format("architecture '{}': not a sequence model (expected one of {}, optionally with a width, "
                             "e.g. lstm96)",
                             arch, fmt::join(SequenceFamilies(), ", ")));
}

ModelPtr MakeSequenceModel(const ModelSpec& spec) {
  const auto [family, width] = ParseSequenceArch(spec.arch);
  if (spec.vocab < 0 || (spec.vocab > 0 && spec.vocab != spec.num_classes)) {
    throw BadInput(fmt::format("vocab {}: expected 0 or the vocabulary, equal to num_classes ({})", spec.vocab,
                               spec.num_classes));
  }
  return Factories().at(family)(spec, width);
}

}  // namespace tb
