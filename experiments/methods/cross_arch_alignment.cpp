// cross_arch_alignment: the surgery report's stage 5, for A and B of different penultimate
// widths. A feature aligner MLP (B's features → 64 → A's features, ReLU, MSE, Adam 1e-3,
// 30 epochs) is trained on the shared classes' training images, seen by both models; B's
// class-4 features carried through it and encoded by A's SAE give the class-4 concept, and
// from there it proceeds as vector_space_alignment (free directions, gated injection, same
// loss). Logs the aligner's relative error as the alignment error. It also runs on pairs of
// equal width. Unspecified in the report: the aligner's epochs, optimizer and data.
#include "experiments/surgery/concept_methods.h"

namespace tb {
namespace {
class CrossArchAlignment : public ConceptAlignment {
 public:
  CrossArchAlignment() : ConceptAlignment(/*cross_architecture=*/true) {}
};
}  // namespace

TB_REGISTER_METHOD(cross_arch_alignment, CrossArchAlignment, "Cross-architecture concept alignment",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 5");

}  // namespace tb
