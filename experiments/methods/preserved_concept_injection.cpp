// preserved_concept_injection: concept_injection with the report's preservation objective:
// loss = transfer cross-entropy on class-4 samples + 0.7 × MSE of A''s logits to A's original
// logits on S_A samples + 0.3 × cross-entropy on S_A samples (options mse_weight, ce_weight,
// transfer_weight). Everything else as concept_injection, whose header lists the choices made
// where the report is silent.
#include "experiments/surgery/concept_methods.h"

namespace tb {
namespace {
class PreservedConceptInjection : public ConceptInjection {
 public:
  PreservedConceptInjection() : ConceptInjection(/*preserve=*/true) {}
};
}  // namespace

TB_REGISTER_METHOD(preserved_concept_injection, PreservedConceptInjection, "SAE concept injection with preservation",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 3");

}  // namespace tb
