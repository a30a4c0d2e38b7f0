// The feature-space surgery methods as two generalized classes, each registered under two
// names with different defaults (as mergekit registers related merges from one class):
//  - ConceptInjection: concept_injection and preserved_concept_injection;
//  - ConceptAlignment: vector_space_alignment (Procrustes on concept centroids) and
//    cross_arch_alignment (a feature-aligner MLP from B's to A's penultimate space).
// The method files in experiments/methods/ document and register them.
#pragma once

#include <string>

#include "experiments/protocols/surgery.h"
#include "experiments/surgery/injection.h"
#include "experiments/surgery/sae.h"

namespace tb {

// The options every concept method shares: its SAE and what it does to A's head.
struct SaeHeadOptions {
  int64_t concepts = 24;
  double l1 = 0.05;
  int64_t sae_epochs = 20;
  std::string head = "keep";
  double ridge = 1e-3;
  void Bind(Options& o);
};

struct ConceptInjectionOptions {
  SaeHeadOptions sae;
  int64_t steps = 50;
  double lr = 0.01;
  double transfer_weight = 1.0;
  double mse_weight = 0.0;
  double ce_weight = 0.0;
  std::string concept_source = "learned";
  void Bind(Options& o);
};

class ConceptInjection : public MethodWithOptions<ConceptInjectionOptions, SurgeryMethod> {
 public:
  explicit ConceptInjection(bool preserve);
  void Check(const MethodCheck& check) const override;
  MethodResult Run(MethodContext& ctx) override;

 private:
  std::string name_;
};

struct ConceptAlignmentOptions {
  SaeHeadOptions sae;
  std::string alignment = "procrustes";  // procrustes | mlp
  int64_t free_k = 0;                    // 0: min(8, concepts / 3)
  double sigma = 5.0;
  int64_t detector_hidden = 16;
  double beta = 0.4;
  double preservation_weight = 0.7;
  double transfer_weight = 0.6;
  double confidence_weight = 0.1;
  double lr = 0.01;
  int64_t steps = 50;
  int64_t transfer_batch = 32;
  int64_t preserve_batch = 16;
  int64_t aligner_hidden = 64;
  int64_t aligner_epochs = 30;
  std::string concept_source = "source";  // source | random (same norm)
  void Bind(Options& o);
};

class ConceptAlignment : public MethodWithOptions<ConceptAlignmentOptions, SurgeryMethod> {
 public:
  explicit ConceptAlignment(bool cross_architecture);
  void Check(const MethodCheck& check) const override;
  MethodResult Run(MethodContext& ctx) override;

 private:
  std::string name_;
};

}  // namespace tb
