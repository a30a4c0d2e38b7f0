// embedding_transfer: the weight-transfer document's token-embedding transfer
// (transfer_token_embeddings) — the source's input embedding copied into the target; where the
// widths differ, projected: projection=gaussian is the document's (a random N(0, 0.01²)
// matrix, source width × target width), projection=pca an orthogonal one (the embedding rows'
// principal directions, so distances between rows are kept when the target is wide enough). On
// the sequential-image task the embedding is the projection of each row's 28 pixels, on the text
// task the token embedding: one row per symbol (its bias an extra row, both); everything else
// keeps the target's initialisation.
#include <fmt/format.h>

#include "experiments/models/sequence.h"
#include "experiments/protocols/bootstrap.h"

namespace tb {
namespace {

struct EmbeddingTransferOptions {
  std::string projection = "gaussian";
  double gaussian_std = 0.01;
  void Bind(Options& o) {
    o.Add("projection", &projection, "when the widths differ: gaussian (the document's) or pca (orthogonal)",
          {"gaussian", "pca"});
    o.Add("gaussian_std", &gaussian_std, "standard deviation of the Gaussian projection's entries (the document's 0.01)");
  }
};

class EmbeddingTransfer : public MethodWithOptions<EmbeddingTransferOptions, BootstrapMethod> {
 public:
  void CheckPair(Classifier& source, Classifier& target) const override {
    FamilyOf(source, "arch_b");
    FamilyOf(target, "arch_a");
    if (!(opts().gaussian_std > 0)) throw BadInput(fmt::format("gaussian_std={}: expected > 0", opts().gaussian_std));
  }
  std::string DryRun(Classifier& source, Classifier& target) const override {
    const auto& s = dynamic_cast<SequenceClassifier&>(source);
    const auto& t = dynamic_cast<SequenceClassifier&>(target);
    return fmt::format("embed.weight [{}, {}] + embed.bias → [{}, {}] + bias: {}\n", s.width(), s.embed->weight.size(1),
                       t.width(), t.embed->weight.size(1), s.width() == t.width() ? "copy" : "projection=" + opts().projection);
  }
  MetricMap Initialise(BootstrapContext& ctx) override {
    auto& s = dynamic_cast<SequenceClassifier&>(*ctx.source);
    auto& t = dynamic_cast<SequenceClassifier&>(*ctx.target);
    torch::NoGradGuard no_grad;
    // The embedding as rows: one per input feature, plus the bias: [29, width].
    const auto rows = torch::cat({s.embed->weight.t(), s.embed->bias.unsqueeze(0)}).to(torch::kCPU);
    torch::Tensor projected;
    if (s.width() == t.width()) {
      projected = rows;
    } else if (opts().projection == "gaussian") {
      projected = torch::matmul(rows, torch::randn({s.width(), t.width()}) * opts().gaussian_std);
    } else {
      // Coordinates in the principal directions of the feature rows (centred); the target's
      // dimensions beyond the source's rank get zeros.
      const auto centred = rows.narrow(0, 0, rows.size(0) - 1) - rows.narrow(0, 0, rows.size(0) - 1).mean(0, true);
      auto [u, sv, vh] = torch::linalg_svd(centred.to(torch::kDouble), /*full_matrices=*/false);
      auto basis = vh.t().to(torch::kFloat);  // [source width, r]
      const int64_t r = std::min(basis.size(1), t.width());
      auto p = torch::zeros({s.width(), t.width()});
      p.narrow(1, 0, r).copy_(basis.narrow(1, 0, r));
      projected = torch::matmul(rows, p);
    }
    t.embed->weight.copy_(projected.narrow(0, 0, rows.size(0) - 1).t());
    t.embed->bias.copy_(projected[rows.size(0) - 1]);
    return {{"projected", s.width() == t.width() ? 0.0 : 1.0}};
  }
};

}  // namespace

TB_REGISTER_METHOD(embedding_transfer, EmbeddingTransfer, "Embedding transfer",
                   "the weight-transfer document, Advanced techniques 2 (token-embedding transfer)");

}  // namespace tb
