#include "experiments/cli/compare_command.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/cli/guarded.h"
#include "reporting/compare.h"
#include "store/errors.h"
#include "store/run_store.h"

namespace fs = std::filesystem;

namespace tb {

void ParseThreshold(const std::string& text, std::map<std::string, double>& thresholds) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw BadInput(fmt::format("--threshold {}: expected METRIC=VALUE (e.g. transfer_rate=0.02, time/*=1.2)", text));
  }
  const std::string value = text.substr(eq + 1);
  size_t used = 0;
  double v = NAN;
  try {
    v = std::stod(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty() || !std::isfinite(v) || v < 0) {
    throw BadInput(fmt::format("--threshold {}: '{}' is not a threshold (expected a number >= 0)", text, value));
  }
  thresholds[text.substr(0, eq)] = v;
}

int RunCompare(const CompareRequest& request, const std::string& results) {
  if (!(request.alpha > 0 && request.alpha < 1)) {
    throw BadInput(fmt::format("--alpha {}: expected a value in (0, 1)", request.alpha));
  }
  if (!request.suite.empty()) CheckSuiteName(request.suite);
  CheckSuiteName(request.name);  // it names the written files
  const std::string store = results + "/runs.db";
  const CompareSide base = LoadSide(request.base, store, request.suite);
  const CompareSide next = LoadSide(request.next, store, request.suite);
  CompareOptions options;
  options.alpha = request.alpha;
  options.thresholds = request.thresholds;
  const Comparison c = Compare(base, next, options);
  const std::string md = RenderCompareMarkdown(c);
  const fs::path dir = fs::path(results) / "reports";
  fs::create_directories(dir);
  std::vector<std::string> written;
  for (const auto& [ext, text] : {std::pair<std::string, std::string>{"md", md}, {"csv", RenderCompareCsv(c)},
                                  {"json", CompareJson(c).dump(2) + "\n"}}) {
    const fs::path path = dir / (request.name + "." + ext);
    const fs::path tmp = dir / (request.name + "." + ext + ".tmp");
    {
      std::ofstream out(tmp);
      out << text;
      if (!out) throw std::runtime_error(fmt::format("{}: cannot write the comparison", tmp.string()));
    }
    fs::rename(tmp, path);
    written.push_back(path.string());
  }
  std::cout << md;
  std::cerr << fmt::format("written: {}\n", fmt::join(written, "  "));
  return Regressed(c) ? 3 : 0;
}

void AddCompareCommand(CLI::App& app, const std::string& results, int& code) {
  auto* cmd = app.add_subcommand(
      "compare", "the regression gate: compare two nights (suite, commit or store file each); exit 3 on a regression");
  auto request = std::make_shared<CompareRequest>();
  auto thresholds = std::make_shared<std::vector<std::string>>();
  cmd->add_option("base", request->base, "BASE: a suite in the store, a git commit (prefix), or FILE.db[:SUITE]")
      ->required();
  cmd->add_option("new", request->next, "NEW: the same kinds")->required();
  cmd->add_option("--suite", request->suite, "only this suite's runs on commit and store-file sides");
  cmd->add_option("--threshold", *thresholds,
                  "METRIC=VALUE: the change that counts (a key or a rule pattern like iid_acc*; repeatable)");
  cmd->add_option("--alpha", request->alpha, "significance level of the signed-rank test (default 0.05)");
  cmd->add_option("--name", request->name, "name of the written files under reports/ (default compare)");
  cmd->callback([request, thresholds, &results, &code] {
    code = Guarded([&] {
      for (const auto& t : *thresholds) ParseThreshold(t, request->thresholds);
      return RunCompare(*request, results);
    });
  });
}

}  // namespace tb
