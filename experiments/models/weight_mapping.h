// Structural weight mapping between sequence-model families (the weight-transfer document's
// create_architecture_mapping / transform_weights): a table of source parameter → target
// parameter entries per pair of families, declared by role (gates to gates, recurrent to
// recurrent, time constants to time constants), and the document's shape transform.
//
//   tb::MappingTable t = tb::BuiltinMapping("lstm", "cfc");
//   auto lines = tb::ApplyMapping(*source, *target, t, tb::PadMode::kZero);   // target changed
//
// The shape transform (TransformShape): a source with fewer dimensions than the target gets the
// missing trailing ones and is broadcast along them; one with more has its extra trailing ones
// averaged away; then the overlapping block is copied and the rest of the target is padded —
// zeros (kZero, the document's np.zeros) or the target's own initialisation (kRandom). Sizes
// larger than the target's are truncated.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "experiments/models/model.h"

namespace tb {

enum class PadMode { kZero, kRandom };
// "zero" or "random"; BadInput naming `option` otherwise.
PadMode ParsePadMode(const std::string& option, const std::string& value);

// What TransformShape does, in words ("copy", "pad 64→96, 28", "truncate", "broadcast", "mean").
std::string DescribeTransform(const std::vector<int64_t>& source, const std::vector<int64_t>& target);
torch::Tensor TransformShape(const torch::Tensor& source, const torch::Tensor& target_init, PadMode pad);

struct MappingEntry {
  std::string source, target;  // parameter names as named_parameters() gives them
};
struct MappingTable {
  std::string name;  // "lstm → cfc", or "table=…" for a user's
  std::vector<MappingEntry> entries;
};

// Pairs of families with a declared table (every family maps to itself: every parameter to
// its namesake).
std::vector<std::pair<std::string, std::string>> BuiltinMappingPairs();
// The declared table of a pair; BadInput naming the pair and listing those that have one.
MappingTable BuiltinMapping(const std::string& source_family, const std::string& target_family);
// A user's table: "src=tgt,src=tgt" (parameter names). BadInput naming `option` for an entry
// without '=' or an empty table.
MappingTable ParseMapping(const std::string& option, const std::string& text);
// The family of a model ("lstm"; BadInput for a model that is not a sequence model).
std::string FamilyOf(const Classifier& model, const std::string& option);

// Checks that every entry names parameters the two models have and that no target parameter is
// mapped twice: BadInput naming the option, the parameter and the model's parameters.
void CheckMapping(const MappingTable& table, Classifier& source, Classifier& target, const std::string& option);

struct MappedParameter {
  std::string source, target, source_role, target_role, transform;
  std::vector<int64_t> source_shape, target_shape;
};
// The table applied to `target` in place (no gradient recorded); `transform` turns each source
// tensor before the shape transform (svd_init's low-rank approximation; identity when empty).
// Returns what was mapped, for the run's log and --dry-run.
std::vector<MappedParameter> ApplyMapping(Classifier& source, Classifier& target, const MappingTable& table,
                                          PadMode pad,
                                          const std::function<torch::Tensor(const torch::Tensor&)>& transform = {});
// The entries described without changing anything.
std::vector<MappedParameter> DescribeMapping(Classifier& source, Classifier& target, const MappingTable& table);
std::string FormatMapping(const MappingTable& table, const std::vector<MappedParameter>& mapped);

// The rank-k approximation U_k S_k V_kᵀ of a matrix (the document's align_memory_manifolds);
// a rank beyond min(rows, cols) is that; a tensor that is not a matrix is returned as it is.
torch::Tensor LowRank(const torch::Tensor& m, int64_t rank);

}  // namespace tb
