// What the TransformerAE report watches while its merger trains, for one predicted CNN against
// its target: the weights' histograms (whole vector, residual, each weight layer), each weight
// layer's singular-value spectrum, and the persistent homology of each layer's neurons (Betti
// numbers, total persistence, Mapper graph, the diagrams' lifetimes, and the bottleneck distance
// between the predicted and the target diagram). Reads tensors only: no random numbers drawn, so
// logging it leaves the training bit for bit as it was.
//
//   tb::LossInputs described;
//   tb::DescribeModel(described, spec);
//   auto scalars = tb::LogPredictionDiagnostics(&log, predicted, target, described, epoch);
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <torch/torch.h>

#include "experiments/losses/loss.h"
#include "store/logger.h"

namespace tb {

// predicted, target: flat weight vectors [P] of the network `described` describes (DescribeModel:
// layer_bounds, layer_shapes and layer_names). Logs at `step`, every key under `prefix`, a weight
// layer L named by its parameter's name without ".weight":
//   histograms  weights/{predicted,target,residual}, weights/L/{predicted,target},
//               spectrum/L/{predicted,target} (singular values of W as [out, in · k]),
//               persistence/h{0,1}/{predicted,target} (death − birth of the finite pairs, all layers)
//   scalars     spectrum/L/{top,effective_rank}_{predicted,target} (largest singular value; exp of
//               the entropy of s / Σs, Roy & Vetterli 2007), {predicted,target}/topo/L/... (the keys
//               of TopologyDiagnostics), topo/L/bottleneck{0,1} (H0 and H1 diagrams, GUDHI)
// and returns the scalars. `log` may be null (nothing logged, the scalars still returned).
// BadInput when the vectors' sizes differ from the description.
std::map<std::string, double> LogPredictionDiagnostics(RunLogger* log, const torch::Tensor& predicted,
                                                       const torch::Tensor& target, const LossInputs& described,
                                                       int64_t step, const std::string& prefix = "merger/");

// TopologyDiagnostics of one network's flat weights [P] with its weight layers named as above
// (topo/conv1/betti0, ...): what the merge protocol logs for the merged model and the zoo models.
std::map<std::string, double> NetworkTopology(const torch::Tensor& flat, const LossInputs& described);

}  // namespace tb
