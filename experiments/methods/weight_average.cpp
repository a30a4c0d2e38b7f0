// weight_average: the entry-wise mean of the two parents' weights (Wortsman et al., model
// soups; the baseline of every merging paper). Without a shared initial checkpoint the parents'
// hidden units are not aligned and the mean is expected to fail: permutation_merge aligns first.
#include "experiments/merge/task_vector_method.h"

namespace tb {
namespace {

class WeightAverage : public TaskVectorMethod<NoMergeOptions> {
 public:
  WeightAverage() : TaskVectorMethod("mean") {}
};

}  // namespace

TB_REGISTER_METHOD(weight_average, WeightAverage, "Weight averaging", "Wortsman et al. 2022, Model soups");

}  // namespace tb
