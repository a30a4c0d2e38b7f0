// ties_merge: TIES-Merging (Yadav et al. 2023): each task vector trimmed to its `density` share
// of largest magnitudes, one sign elected per entry (the sign of the summed trimmed vectors),
// the disjoint mean over the parents that agree with it, scaled by λ (chosen as task_arithmetic's).
#include "experiments/merge/task_vector_method.h"

namespace tb {
namespace {

class TiesMerge : public TaskVectorMethod<TiesOptions> {
 public:
  TiesMerge() : TaskVectorMethod("ties") {}
};

}  // namespace

TB_REGISTER_METHOD(ties_merge, TiesMerge, "TIES-Merging", "Yadav et al. 2023, TIES-Merging");

}  // namespace tb
