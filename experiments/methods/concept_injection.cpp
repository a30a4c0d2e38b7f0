// concept_injection: the surgery report's stage 2. A sparse autoencoder (in→2c→c→2c→in, ReLU,
// L1 0.05, c = 24) is trained on target A's penultimate features of S_A data; a class-4
// concept vector and an injection strength γ are learned in concept space, by cross-entropy of
// class-4 training samples to label 4 through A's head, and the injected code is decoded back
// into A's feature space for every input. Nothing tells the injection when not to fire, so the
// report found 100% transfer and 0% preservation. B is not used at all: the `label_probe`
// reference shows what the same labelled data buys without any surgery.
// Unspecified in the report, chosen here: SAE epochs (20, Adam 1e-3, batch 64), injection
// steps (50) and learning rate (0.01, as stage 4), the head (option `head`, default keep: the
// literal reading), and the concept's start (N(0, 0.1²)). `concept_source=random` freezes the
// concept at a random vector instead (control).
#include "experiments/surgery/concept_methods.h"

namespace tb {
namespace {
class ConceptInjectionMethod : public ConceptInjection {
 public:
  ConceptInjectionMethod() : ConceptInjection(/*preserve=*/false) {}
};
}  // namespace

TB_REGISTER_METHOD(concept_injection, ConceptInjectionMethod, "SAE concept injection",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 2");

}  // namespace tb
