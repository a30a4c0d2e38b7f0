// cascade_transplant: the surgery report's stage-2 cascade. Start at the output: the k neurons
// of B's last hidden layer that B's class-4 row weighs most (by |weight|) move into A's k
// least-used neurons of that layer (least mean activation on S_A data), and A's class-4 row and
// bias become B's, wired to them. Then walk back layer by layer: the k neurons of B's layer
// below that the moved neurons use most (sum of |weight|) move into A's k least-used neurons
// there, and the moved neurons' incoming weights are rewired to them; at the first layer the
// incoming weights (from pixels) are copied whole. The report reached 51.9% transfer.
// Unspecified in the report, chosen here: the moved neurons read only from moved neurons
// (their other incoming weights are zeroed); with `isolate` (default true) A's own neurons
// and rows stop reading the moved neurons, so the circuit cannot disturb S_A; `select_a`
// chooses A's neurons (least_active, or random as a check). A and B need the same depth.
#include <fmt/format.h>

#include "experiments/data/dataset.h"
#include "experiments/protocols/surgery.h"
#include "experiments/surgery/injection.h"
#include "store/errors.h"

namespace tb {
namespace {

struct CascadeOptions {
  int64_t k = 24;
  std::string select_a = "least_active";
  bool isolate = true;
  int64_t usage_samples = 2000;
  void Bind(Options& o) {
    o.Add("k", &k, "neurons moved per layer (clipped to the narrower layer)");
    o.Add("select_a", &select_a, "how A's receiving neurons are chosen", {"least_active", "random"});
    o.Add("isolate", &isolate, "A's own neurons and rows stop reading the moved neurons");
    o.Add("usage_samples", &usage_samples, "S_A samples used to measure A's neuron usage");
  }
};

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

class CascadeTransplant : public MethodWithOptions<CascadeOptions, SurgeryMethod> {
 public:
  void Check(const MethodCheck& c) const override {
    for (const auto& name : c.target_layers) {
      if (name.rfind("fc", 0) != 0) {
        throw BadInput(fmt::format("cascade_transplant: needs an MLP; {} has layer {}", c.target.arch, name));
      }
    }
    if (c.target_layers.size() != c.source_layers.size()) {
      throw BadInput(fmt::format("cascade_transplant: target {} has {} hidden layers and source {} has {}; the cascade "
                                 "needs equal depths",
                                 c.target.arch, c.target_layers.size(), c.source.arch, c.source_layers.size()));
    }
    RequireAtLeast("k", static_cast<double>(opts().k), 1);
  }
  MethodResult Run(MethodContext& ctx) override {
    const auto& o = opts();
    auto& a = *ctx.target;
    auto& b = *ctx.source;
    const auto layers_a = a.HiddenLayerNames();
    const auto layers_b = b.HiddenLayerNames();
    for (const auto& name : layers_a) {
      if (name.rfind("fc", 0) != 0) {
        throw BadInput(fmt::format("cascade_transplant: needs an MLP; {} has layer {}", a.spec().arch, name));
      }
    }
    if (layers_a.size() != layers_b.size()) {
      throw BadInput(fmt::format("cascade_transplant: target {} has {} hidden layers and source {} has {}; the cascade "
                                 "needs equal depths",
                                 a.spec().arch, layers_a.size(), b.spec().arch, layers_b.size()));
    }
    if (o.k < 1) throw BadInput(fmt::format("k={}: expected >= 1", o.k));
    const int64_t t = ctx.data.classes.transfer.front();
    const size_t depth = layers_a.size();
    auto pa = a.named_parameters();
    auto pb = b.named_parameters();
    auto weight = [](torch::OrderedDict<std::string, torch::Tensor>& p, const std::string& layer) {
      return p[layer + ".weight"];
    };
    auto bias = [](torch::OrderedDict<std::string, torch::Tensor>& p, const std::string& layer) {
      return p[layer + ".bias"];
    };

    // A's usage per neuron: mean activation on S_A samples.
    std::vector<torch::Tensor> usage;
    {
      torch::NoGradGuard no_grad;
      a.eval();
      const int64_t n = std::min(o.usage_samples, ctx.data.a_train.size());
      auto acts = a.HiddenActivations(ctx.data.a_train.images.slice(0, 0, n).to(ctx.device));
      for (auto& act : acts) usage.push_back(act.abs().mean(0));
    }
    auto choose_a = [&](size_t layer, int64_t k) {
      if (o.select_a == "random") {
        auto perm = PortablePermutation(usage[layer].size(0), ctx.seed * 8191ULL + layer);
        return std::vector<int64_t>(perm.begin(), perm.begin() + k);
      }
      return ToVector(std::get<1>(torch::topk(usage[layer], k, 0, /*largest=*/false, /*sorted=*/true)));
    };

    torch::NoGradGuard no_grad;
    std::vector<std::vector<int64_t>> sel_a(depth), sel_b(depth);
    // The last hidden layer: B's neurons its class-4 row weighs most.
    {
      const int64_t k = std::min({o.k, a.FeatureWidth(), b.FeatureWidth()});
      sel_b[depth - 1] = ToVector(std::get<1>(torch::topk(b.head->weight[t].abs(), k)));
      sel_a[depth - 1] = choose_a(depth - 1, k);
    }
    for (size_t l = depth - 1; l > 0; --l) {
      auto wb = weight(pb, layers_b[l]);
      auto idx = torch::tensor(sel_b[l], torch::kInt64).to(ctx.device);
      auto score = wb.index_select(0, idx).abs().sum(0);
      const int64_t k = std::min({o.k, weight(pa, layers_a[l - 1]).size(0), weight(pb, layers_b[l - 1]).size(0)});
      sel_b[l - 1] = ToVector(std::get<1>(torch::topk(score, k)));
      sel_a[l - 1] = choose_a(l - 1, k);
    }
    // Transplant every layer's incoming weights, rewired to the moved neurons below.
    int64_t moved = 0;
    for (size_t l = 0; l < depth; ++l) {
      auto wa = weight(pa, layers_a[l]);
      auto wb = weight(pb, layers_b[l]);
      auto ba = bias(pa, layers_a[l]);
      auto bb = bias(pb, layers_b[l]);
      for (size_t j = 0; j < sel_a[l].size(); ++j) {
        const int64_t ia = sel_a[l][j], ib = sel_b[l][j];
        if (l == 0) {
          wa[ia].copy_(wb[ib]);
        } else {
          wa[ia].zero_();
          for (size_t m = 0; m < sel_a[l - 1].size(); ++m) wa[ia][sel_a[l - 1][m]].copy_(wb[ib][sel_b[l - 1][m]]);
        }
        ba[ia].copy_(bb[ib]);
        ++moved;
      }
      if (o.isolate && l + 1 < depth) {
        auto next = weight(pa, layers_a[l + 1]);
        std::vector<bool> is_moved(static_cast<size_t>(next.size(0)), false);
        for (int64_t i : sel_a[l + 1]) is_moved[static_cast<size_t>(i)] = true;
        for (int64_t r = 0; r < next.size(0); ++r) {
          if (is_moved[static_cast<size_t>(r)]) continue;
          for (int64_t c : sel_a[l]) next[r][c].zero_();
        }
      }
    }
    // The head: the class-4 row reads the moved neurons with B's weights.
    a.head->weight[t].zero_();
    for (size_t m = 0; m < sel_a[depth - 1].size(); ++m) {
      a.head->weight[t][sel_a[depth - 1][m]].copy_(b.head->weight[t][sel_b[depth - 1][m]]);
    }
    a.head->bias[t].copy_(b.head->bias[t]);
    if (o.isolate) {
      for (int64_t r = 0; r < a.head->weight.size(0); ++r) {
        if (r == t) continue;
        for (int64_t c : sel_a[depth - 1]) a.head->weight[r][c].zero_();
      }
    }
    return {ctx.target, {{"moved_neurons", static_cast<double>(moved)}, {"layers", static_cast<double>(depth)}}};
  }
};

}  // namespace

TB_REGISTER_METHOD(cascade_transplant, CascadeTransplant, "Cascade transplant of the class-4 circuit",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 2 cascade");

}  // namespace tb
