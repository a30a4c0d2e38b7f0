// svd_init: the weight-transfer document's manifold alignment (align_memory_manifolds): each
// recurrent or memory matrix of the target from the top `rank` singular components of the
// source's counterpart (the pair's mapping table restricted to those roles), then the shape
// transform; everything else keeps the target's initialisation. At full rank it copies the
// matrices themselves.
#include <fmt/format.h>

#include "experiments/protocols/bootstrap.h"

namespace tb {
namespace {

struct SvdInitOptions {
  MappingChoice mapping;
  int64_t rank = 16;
  SvdInitOptions() { mapping.pad = "random"; }
  void Bind(Options& o) {
    mapping.Bind(o);
    o.Add("rank", &rank, "singular components kept of each source matrix");
  }
};

class SvdInit : public MethodWithOptions<SvdInitOptions, BootstrapMethod> {
 public:
  void CheckPair(Classifier& source, Classifier& target) const override {
    RequireAtLeast("rank", static_cast<double>(opts().rank), 1);
    if (Table(source, target).entries.empty()) {
      throw BadInput(fmt::format("svd_init: the mapping {} → {} maps no recurrent or memory matrix (expected one)",
                                 source.spec().arch, target.spec().arch));
    }
  }
  std::string DryRun(Classifier& source, Classifier& target) const override {
    const MappingTable t = Table(source, target);
    return fmt::format("rank={} pad={}\n", opts().rank, opts().mapping.pad) +
           FormatMapping(t, DescribeMapping(source, target, t));
  }
  MetricMap Initialise(BootstrapContext& ctx) override {
    const MappingTable t = Table(*ctx.source, *ctx.target);
    const int64_t rank = opts().rank;
    const auto mapped = ApplyMapping(*ctx.source, *ctx.target, t, opts().mapping.Pad(),
                                     [rank](const torch::Tensor& m) { return LowRank(m, rank); });
    ctx.log.Text(FormatMapping(t, mapped));
    return {{"mapped_tensors", static_cast<double>(mapped.size())}};
  }

 private:
  // The pair's table, only its entries between recurrent or memory matrices.
  MappingTable Table(Classifier& source, Classifier& target) const {
    MappingTable all = opts().mapping.Resolve(source, target);
    MappingTable t;
    t.name = all.name + " (recurrent and memory matrices)";
    for (const auto& m : DescribeMapping(source, target, all)) {
      const bool matrix = m.source_shape.size() == 2 && m.target_shape.size() == 2;
      const bool role = (m.source_role == "recurrent" || m.source_role == "memory") &&
                        (m.target_role == "recurrent" || m.target_role == "memory");
      if (matrix && role) t.entries.push_back({m.source, m.target});
    }
    return t;
  }
};

}  // namespace

TB_REGISTER_METHOD(svd_init, SvdInit, "SVD manifold alignment",
                   "the weight-transfer document, Advanced techniques 1 (manifold alignment)");

}  // namespace tb
