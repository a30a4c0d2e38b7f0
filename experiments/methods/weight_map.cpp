// weight_map: the weight-transfer document's structural mapping (create_architecture_mapping,
// transform_weights): gates to gates, recurrent to recurrent, time constants to time constants,
// by a table declared per pair of families (experiments/models/weight_mapping.cpp), each tensor
// through the document's shape transform (copy the overlap, pad or truncate the rest, broadcast a
// missing dimension, average an extra one). pad=zero is the document's: padded units have zero
// incoming and outgoing weights, so no gradient ever reaches them (dead_capacity shows it);
// pad=random keeps the target's own initialisation there. Unmapped parameters keep theirs.
#include <algorithm>

#include <fmt/format.h>

#include "experiments/protocols/bootstrap.h"

namespace tb {
namespace {

struct WeightMapOptions {
  MappingChoice mapping;
  void Bind(Options& o) { mapping.Bind(o); }
};

class WeightMap : public MethodWithOptions<WeightMapOptions, BootstrapMethod> {
 public:
  void CheckPair(Classifier& source, Classifier& target) const override { opts().mapping.Resolve(source, target); }
  std::string DryRun(Classifier& source, Classifier& target) const override {
    const MappingTable t = opts().mapping.Resolve(source, target);
    return fmt::format("pad={}\n", opts().mapping.pad) + FormatMapping(t, DescribeMapping(source, target, t));
  }
  MetricMap Initialise(BootstrapContext& ctx) override {
    const MappingTable t = opts().mapping.Resolve(*ctx.source, *ctx.target);
    const auto mapped = ApplyMapping(*ctx.source, *ctx.target, t, opts().mapping.Pad());
    ctx.log.Text(FormatMapping(t, mapped));
    // Entries that come from the source: the copied block (a broadcast dimension at the target's extent).
    int64_t entries = 0;
    for (const auto& m : mapped) {
      int64_t n = 1;
      for (size_t d = 0; d < m.target_shape.size(); ++d) {
        n *= d < m.source_shape.size() ? std::min(m.source_shape[d], m.target_shape[d]) : m.target_shape[d];
      }
      entries += n;
    }
    return {{"mapped_tensors", static_cast<double>(mapped.size())},
            {"mapped_share", static_cast<double>(entries) / static_cast<double>(CountParameters(*ctx.target))}};
  }
};

}  // namespace

TB_REGISTER_METHOD(weight_map, WeightMap, "Structural weight mapping",
                   "the weight-transfer document, sections 1-3 (xLSTM → GUCE-CFC)");

}  // namespace tb
