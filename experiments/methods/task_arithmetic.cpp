// task_arithmetic: base + λ (τ1 + τ2) with τi = Wi − base, the base the shared initial
// checkpoint (W1's when the parents do not share one), λ chosen on the union's validation data
// over 0 … 3 in steps of 0.05 unless set (Ilharco et al. 2023, Editing models with task arithmetic).
#include "experiments/merge/task_vector_method.h"

namespace tb {
namespace {

class TaskArithmetic : public TaskVectorMethod<LambdaOptions> {
 public:
  TaskArithmetic() : TaskVectorMethod("sum") {}
};

}  // namespace

TB_REGISTER_METHOD(task_arithmetic, TaskArithmetic, "Task arithmetic", "Ilharco et al. 2023, Editing models with task arithmetic");

}  // namespace tb
