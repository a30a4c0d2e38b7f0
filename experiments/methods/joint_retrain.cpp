// joint_retrain (continual): after each task, a model trained on every class seen so far from the
// shared initial checkpoint (the zoo's): the joint upper reference, which keeps all old data.
#include "experiments/protocols/continual.h"

namespace tb {
namespace {

class JointRetrain : public MethodWithOptions<NoOptions, ContinualMethod> {
 public:
  ModelPtr Step(ContinualStep& s) override { return s.joint_model(s.data.classes); }
};

}  // namespace

TB_REGISTER_METHOD(joint_retrain, JointRetrain, "Joint retraining (continual, upper reference)",
                   "class-incremental upper bound");

}  // namespace tb
