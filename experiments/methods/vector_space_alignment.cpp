// vector_space_alignment: the surgery report's stage 4. SAEs for A and B (c = 24); per-class
// concept centroids; orthogonal Procrustes on the shared classes (R = UVᵀ from the SVD of
// C_Bᵀ C_A); free directions = the last k left singular vectors of A's used centroids
// (k = min(8, c/3)); B's class-4 centroid, aligned by R, projected onto them is the concept.
// A gate mixes a spatial detector (Gaussian of the distance to the aligned centroid, σ = 5)
// and a learned detector (c→16→1) with β = 0.4; a learnable strength γ and preservation
// blend ρ; loss 0.7 preservation (MSE to A's logits on S_A) + 0.6 transfer (class-4
// cross-entropy) + 0.1 confidence (entropy of class-4 predictions); Adam lr 0.01, 50 steps,
// batches 32 / 16. Logs the alignment error ε and k. With two shared classes, R is fitted to two
// points in 24 dimensions: ε is ~0 whatever the models, which says little.
// Unspecified in the report, chosen here: SAE epochs (20), the confidence term (entropy), the
// blend's start (ρ = 0.88), the head (option `head`, default keep). `concept_source=random`
// replaces the aligned concept by a random vector of the same norm (control).
#include "experiments/surgery/concept_methods.h"

namespace tb {
namespace {
class VectorSpaceAlignment : public ConceptAlignment {
 public:
  VectorSpaceAlignment() : ConceptAlignment(/*cross_architecture=*/false) {}
};
}  // namespace

TB_REGISTER_METHOD(vector_space_alignment, VectorSpaceAlignment, "Vector-space concept alignment",
                   "Neural Network Surgery for Knowledge Transfer (seed report), stage 4");

}  // namespace tb
