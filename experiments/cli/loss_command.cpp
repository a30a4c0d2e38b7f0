#include "experiments/cli/loss_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/cli/guarded.h"
#include "experiments/data/dataset.h"
#include "experiments/losses/loss.h"
#include "experiments/models/model.h"
#include "store/errors.h"

namespace tb {
namespace {

// One number per line (blank lines skipped); BadInput naming the file and line otherwise.
torch::Tensor ReadVector(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw BadInput(fmt::format("{}: cannot open (expected a file of one number per line)", path));
  std::vector<double> values;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream cell(line);
    double v = 0;
    std::string rest;
    if (!(cell >> v) || (cell >> rest) || !std::isfinite(v)) {
      throw BadInput(fmt::format("{}:{}: '{}': expected one finite number per line", path, n, line));
    }
    values.push_back(v);
  }
  if (values.empty()) throw BadInput(fmt::format("{}: no numbers (expected one per line)", path));
  return torch::tensor(values, torch::kDouble);
}

}  // namespace

void AddLossCommand(CLI::App& app, int& code) {
  auto* cmd = app.add_subcommand("loss", "evaluate one registered loss on two weight vectors (one number per line)");
  static std::string name, a, b;
  static std::vector<std::string> sets;
  static std::vector<int64_t> layers;
  static int64_t repeat = 0, probe = 32;
  static std::string arch, activation = "relu";
  cmd->add_option("name", name, "the loss (transferbench list losses)")->required();
  cmd->add_option("--a", a, "the predicted vector: a file of one number per line")->required();
  cmd->add_option("--b", b, "the target vector, as long as --a")->required();
  cmd->add_option("--set", sets, "a loss option, key=value (repeatable)");
  cmd->add_option("--layers", layers, "layer offsets 0,...,P for the per-layer losses (default: one layer)")->delimiter(',');
  cmd->add_option("--arch", arch,
                  "the vectors are networks of this architecture (e.g. cnn2464): sets the layers and their shapes for the "
                  "per-neuron and functional losses");
  cmd->add_option("--activation", activation, "with --arch: the networks' activation");
  cmd->add_option("--probe", probe, "with --arch: MNIST test images the functional losses run the networks on");
  cmd->add_option("--repeat", repeat,
                  "evaluate N times and print a second line, seconds_per_eval <mean seconds> (for timing against other tools)");
  cmd->callback([&, cmd] {
    code = Guarded([&] {
      auto loss = Losses().Find(name).make();
      for (const auto& s : sets) {
        const auto eq = s.find('=');
        if (eq == std::string::npos) throw BadInput(fmt::format("--set {}: expected key=value", s));
        loss->options().SetText(s.substr(0, eq), s.substr(eq + 1));
      }
      LossInputs in;
      in.predicted = ReadVector(a);
      in.target = ReadVector(b);
      in.layer_bounds = layers;
      if (!arch.empty()) {
        if (!layers.empty()) throw BadInput("--layers: not with --arch (the architecture gives its layers)");
        const auto images = ImageModelNames();
        if (std::find(images.begin(), images.end(), arch) == images.end()) {
          throw BadInput(fmt::format("--arch {}: expected an image model: one of {}", arch, fmt::join(images, ", ")));
        }
        DescribeModel(in, ModelSpec{arch, activation, "default"});
        if (probe < 1) throw BadInput(fmt::format("--probe {}: expected a count >= 1", probe));
        const Split& test = LoadDataset(DataSpec{"mnist", ""}).test;
        in.probe = test.images.slice(0, 0, std::min<int64_t>(probe, test.size())).to(torch::kDouble);
      }
      if (repeat < 0 || (repeat == 0 && cmd->count("--repeat") > 0)) {
        throw BadInput(fmt::format("--repeat {}: expected a count >= 1", repeat));
      }
      const auto start = std::chrono::steady_clock::now();
      double value = 0;
      for (int64_t i = 0; i < std::max<int64_t>(repeat, 1); ++i) value = loss->Compute(in).item<double>();
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      std::cout << fmt::format("{:.17g}\n", value);
      if (repeat > 0) std::cout << fmt::format("seconds_per_eval {:.6g}\n", elapsed.count() / repeat);
      return 0;
    });
  });
}

}  // namespace tb
