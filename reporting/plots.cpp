#include "reporting/plots.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

namespace tb {
namespace {

using nlohmann::json;

std::string ConfigString(const json& config, const std::string& key) {
  if (!config.contains(key)) return "";
  const auto& v = config.at(key);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// The datasets of a table's groups, sorted: each gets its own plot.
std::set<std::string> Datasets(const std::vector<RunGroup>& groups) {
  std::set<std::string> out;
  for (const auto& g : groups) out.insert(ConfigString(g.config, "dataset"));
  return out;
}

// A group's row label without the dataset (the plot is of one dataset): its displayed keys
// after the first, then what sets it apart where they do not, as the table names it.
std::string SeriesLabel(const RunGroup& g) {
  std::string label;
  for (size_t i = 1; i < g.keys.size(); ++i) {
    if (!g.keys[i].empty()) label += (label.empty() ? "" : " · ") + g.keys[i];
  }
  return g.variant.empty() ? label : label + " (" + g.variant + ")";
}

std::string Tags(const RunRecord& run) {
  std::string out;
  for (const auto& t : run.tags) out += (out.empty() ? "" : ", ") + t;
  return out;
}

// What every point of a run carries into its tooltip: which run, made by which suite.
json RunFields(const RunRecord& run) {
  return {{"run", run.id.substr(0, 8)}, {"seed", run.seed}, {"suite", run.suite}, {"tags", Tags(run)}};
}

json Field(const std::string& field, const std::string& type, const std::string& title) {
  return {{"field", field}, {"type", type}, {"title", title}};
}

json Percent(json field) {
  field["format"] = ".1%";
  return field;
}

json Spec(const std::string& title, json values) {
  return {{"$schema", kVegaLiteSchema}, {"title", title}, {"data", {{"values", std::move(values)}}}};
}

// The control a surgery run is: what replaced B (source), or the method's own concept control.
std::string SurgeryControl(const json& config) {
  if (ConfigString(config, "concept_source") == "random") return "concept random";
  const std::string source = ConfigString(config, "source");
  return source.empty() ? "trained" : source;
}

// Transfer against preservation: one point per run, one panel per method (and head, and
// calibration), coloured by source so each method sits beside its controls; a diamond marks
// the mean of a panel's runs under each source.
std::vector<Plot> TransferPreservation(const PlotInput& in) {
  const std::vector<RunGroup> groups = GroupRuns(in.store, NightlyTableSpec(in.suite, in.declared));
  std::vector<Plot> plots;
  for (const std::string& dataset : Datasets(groups)) {
    json values = json::array();
    std::set<std::string> controls;
    for (const auto& g : groups) {
      if (ConfigString(g.config, "dataset") != dataset) continue;
      std::string panel = g.method;
      if (const std::string head = ConfigString(g.config, "head"); !head.empty()) panel += ", head=" + head;
      if (const std::string cal = ConfigString(g.config, "calibrate"); !cal.empty() && cal != "none") {
        panel += ", calibrate=" + cal;
      }
      const std::string control = SurgeryControl(g.config);
      for (const auto& run : g.runs) {
        const auto summary = in.store.Summary(run.id);
        const auto t = summary.find("transfer_rate"), p = summary.find("preservation");
        if (t == summary.end() || p == summary.end() || !std::isfinite(t->second) || !std::isfinite(p->second)) {
          continue;
        }
        json v = RunFields(run);
        v.update({{"method", panel},
                  {"control", control},
                  {"transfer", t->second},
                  {"preservation", p->second},
                  {"pair", ConfigString(g.config, "arch_b") + " → " + ConfigString(g.config, "arch_a")},
                  {"epochs", ConfigString(g.config, "train.epochs")},
                  {"setting", g.variant}});
        values.push_back(std::move(v));
        controls.insert(control);
      }
    }
    if (values.empty()) continue;
    // The trained source first, so a method's own colour is the same on every page.
    json domain = json::array();
    for (const char* c : {"trained", "random", "shuffled", "concept random"}) {
      if (controls.erase(c)) domain.push_back(c);
    }
    for (const auto& c : controls) domain.push_back(c);
    json xe = {{"field", "preservation"},
               {"type", "quantitative"},
               {"title", "Preservation"},
               {"axis", {{"format", "%"}}},
               {"scale", {{"zero", true}}}};
    json ye = {{"field", "transfer"},
               {"type", "quantitative"},
               {"title", "Transfer"},
               {"axis", {{"format", "%"}}},
               {"scale", {{"domain", {0, 1}}}}};
    json color = {{"field", "control"}, {"type", "nominal"}, {"title", "Source"}, {"scale", {{"domain", domain}}}};
    json points = {{"mark", {{"type", "point"}, {"filled", true}, {"opacity", 0.55}, {"size", 36}}},
                   {"encoding",
                    {{"x", xe},
                     {"y", ye},
                     {"color", color},
                     {"tooltip",
                      {Field("method", "nominal", "method"), Field("control", "nominal", "source"),
                       Field("pair", "nominal", "pair"), Field("epochs", "nominal", "epochs"),
                       Field("setting", "nominal", "setting"), Percent(Field("transfer", "quantitative", "transfer")),
                       Percent(Field("preservation", "quantitative", "preservation")), Field("run", "nominal", "run"),
                       Field("seed", "quantitative", "seed"), Field("suite", "nominal", "suite"),
                       Field("tags", "nominal", "tags")}}}}};
    json means = {{"transform",
                   {{{"aggregate",
                      {{{"op", "mean"}, {"field", "transfer"}, {"as", "transfer"}},
                       {{"op", "mean"}, {"field", "preservation"}, {"as", "preservation"}},
                       {{"op", "count"}, {"as", "runs"}}}},
                     {"groupby", {"method", "control"}}}}},
                  {"mark",
                   {{"type", "point"},
                    {"shape", "diamond"},
                    {"filled", true},
                    {"size", 220},
                    {"stroke", "black"},
                    {"strokeWidth", 1}}},
                  {"encoding",
                   {{"x", xe},
                    {"y", ye},
                    {"color", color},
                    {"tooltip",
                     {Field("method", "nominal", "method"), Field("control", "nominal", "source"),
                      Percent(Field("transfer", "quantitative", "mean transfer")),
                      Percent(Field("preservation", "quantitative", "mean preservation")),
                      Field("runs", "quantitative", "runs")}}}}};
    Plot plot;
    plot.name = "transfer-preservation/" + dataset;
    plot.title = fmt::format("Transfer against preservation ({})", dataset);
    plot.caption =
        "One point per run; the diamond is the mean of a panel's runs under that source (model pairs, "
        "epochs and seeds pooled). Source: B as trained, or the controls that replace it (random "
        "initialisation, shuffled weights) or the method's concept vector (concept random).";
    plot.spec = Spec(plot.title, std::move(values));
    plot.spec["facet"] = {
        {"field", "method"}, {"type", "nominal"}, {"title", nullptr}, {"header", {{"labelLimit", 300}}}};
    plot.spec["columns"] = 4;
    plot.spec["spec"] = {{"width", 230}, {"height", 190}, {"layer", {points, means}}};
    plots.push_back(std::move(plot));
  }
  return plots;
}

// The training-depth table as curves: transfer and preservation (mean ± std over seeds) against
// the epochs A and B were trained for, one line per method.
std::vector<Plot> TrainingDepth(const PlotInput& in) {
  std::vector<Plot> plots;
  for (const SurgeryTables& t : in.report.surgery) {
    json values = json::array();
    for (const auto& row : t.depth) {
      for (size_t i = 0; i < t.epochs.size(); ++i) {
        for (const auto& [measure, cells] :
             {std::pair{"Transfer", &row.transfer}, std::pair{"Preservation", &row.preservation}}) {
          const Cell& c = (*cells)[i];
          if (c.n == 0) continue;
          values.push_back({{"method", row.method},
                            {"epochs", t.epochs[i]},
                            {"measure", measure},
                            {"mean", c.mean},
                            {"lo", c.mean - c.std},
                            {"hi", c.mean + c.std},
                            {"std", c.std},
                            {"n", c.n}});
        }
      }
    }
    if (values.empty()) continue;
    json epochs_axis = json::array();
    for (int64_t e : t.epochs) epochs_axis.push_back(e);
    const json x = {{"field", "epochs"},
                    {"type", "quantitative"},
                    {"title", "epochs A and B were trained"},
                    {"scale", {{"type", "log"}}},
                    {"axis", {{"values", epochs_axis}, {"format", "d"}}}};
    const json color = {{"field", "method"}, {"type", "nominal"}, {"title", "Method"}};
    const json bars = {
        {"mark", {{"type", "rule"}, {"opacity", 0.6}}},
        {"encoding",
         {{"x", x}, {"y", {{"field", "lo"}, {"type", "quantitative"}}}, {"y2", {{"field", "hi"}}}, {"color", color}}}};
    const json lines = {
        {"mark", {{"type", "line"}, {"point", true}}},
        {"encoding",
         {{"x", x},
          {"y",
           {{"field", "mean"}, {"type", "quantitative"}, {"title", "mean over seeds"}, {"axis", {{"format", "%"}}}}},
          {"color", color},
          {"tooltip",
           {Field("method", "nominal", "method"), Field("measure", "nominal", "measure"),
            Field("epochs", "quantitative", "epochs"), Percent(Field("mean", "quantitative", "mean")),
            Percent(Field("std", "quantitative", "std")), Field("n", "quantitative", "runs")}}}}};
    Plot plot;
    plot.name = "training-depth/" + t.dataset;
    plot.title = fmt::format("Training depth ({}, wide → wide)", t.dataset);
    plot.caption =
        "The training-depth table: mean over seeds, the bar ± one standard deviation; the row of each "
        "method stands on one setting across its epochs, as in the table.";
    plot.spec = Spec(plot.title, std::move(values));
    plot.spec["facet"] = {
        {"field", "measure"}, {"type", "nominal"}, {"title", nullptr}, {"sort", {"Transfer", "Preservation"}}};
    plot.spec["columns"] = 2;
    plot.spec["spec"] = {{"width", 300}, {"height", 220}, {"layer", {bars, lines}}};
    plot.spec["resolve"] = {{"scale", {{"y", "independent"}}}};
    plots.push_back(std::move(plot));
  }
  return plots;
}

// Fine-tuning of the merged model: IID accuracy after 0, 1, 2, ... epochs (iid_acc and
// iid_acc_ft<e>), a thin line per run and the mean per table row.
std::vector<Plot> FinetuneCurves(const PlotInput& in) {
  const std::vector<RunGroup> groups = GroupRuns(in.store, MergeTableSpec(in.suite, in.declared));
  const std::string prefix = "iid_acc_ft";
  std::vector<Plot> plots;
  for (const std::string& dataset : Datasets(groups)) {
    json values = json::array();
    for (const auto& g : groups) {
      if (ConfigString(g.config, "dataset") != dataset) continue;
      for (const auto& run : g.runs) {
        for (const auto& [key, acc] : in.store.Summary(run.id)) {
          int64_t epoch = -1;
          if (key == "iid_acc") {
            epoch = 0;
          } else if (key.rfind(prefix, 0) == 0 && key.size() > prefix.size() &&
                     key.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
            epoch = std::stoll(key.substr(prefix.size()));
          }
          if (epoch < 0 || !std::isfinite(acc)) continue;
          json v = RunFields(run);
          v.update(
              {{"series", SeriesLabel(g)},
               {"epoch", epoch},
               {"acc", acc},
               {"parents", ConfigString(run.config, "classes_1") + " | " + ConfigString(run.config, "classes_2")}});
          values.push_back(std::move(v));
        }
      }
    }
    if (values.empty()) continue;
    const json x = {
        {"field", "epoch"}, {"type", "quantitative"}, {"title", "fine-tuning epochs"}, {"axis", {{"tickMinStep", 1}}}};
    const json color = {
        {"field", "series"}, {"type", "nominal"}, {"title", "Method"}, {"legend", {{"labelLimit", 360}}}};
    const json runs = {
        {"mark", {{"type", "line"}, {"opacity", 0.3}, {"strokeWidth", 1}}},
        {"encoding",
         {{"x", x},
          {"y",
           {{"field", "acc"},
            {"type", "quantitative"},
            {"title", "IID accuracy (C1 ∪ C2)"},
            {"axis", {{"format", "%"}}}}},
          {"color", color},
          {"detail", {{"field", "run"}, {"type", "nominal"}}},
          {"tooltip",
           {Field("series", "nominal", "method"), Field("parents", "nominal", "C1 | C2"),
            Field("epoch", "quantitative", "epoch"), Percent(Field("acc", "quantitative", "IID accuracy")),
            Field("run", "nominal", "run"), Field("seed", "quantitative", "seed"), Field("suite", "nominal", "suite"),
            Field("tags", "nominal", "tags")}}}}};
    const json means = {
        {"mark", {{"type", "line"}, {"point", true}, {"strokeWidth", 2.5}}},
        {"encoding",
         {{"x", x},
          {"y", {{"aggregate", "mean"}, {"field", "acc"}, {"type", "quantitative"}}},
          {"color", color},
          {"tooltip",
           {Field("series", "nominal", "method"),
            Field("epoch", "quantitative", "epoch"),
            {{"aggregate", "mean"}, {"field", "acc"}, {"type", "quantitative"}, {"title", "mean"}, {"format", ".1%"}},
            {{"aggregate", "count"}, {"type", "quantitative"}, {"title", "runs"}}}}}}};
    Plot plot;
    plot.name = "finetune/" + dataset;
    plot.title = fmt::format("Fine-tuning the merged model ({})", dataset);
    plot.caption =
        "IID accuracy on the test images of C1 ∪ C2 as merged (epoch 0) and after each fine-tuning epoch "
        "the runs logged: a thin line per run, the thick line the mean of the merge table's row (parent "
        "pairs and seeds pooled). The ensemble is not fine-tuned.";
    plot.spec = Spec(plot.title, std::move(values));
    plot.spec["width"] = 560;
    plot.spec["height"] = 320;
    plot.spec["layer"] = {runs, means};
    plots.push_back(std::move(plot));
  }
  return plots;
}

// The continual accuracy matrix R[i][j] as a heat map, the mean over the row's seeds, for the
// 10-way head and the task-aware reading: one panel each per continual table row.
std::vector<Plot> AccuracyMatrix(const PlotInput& in) {
  const std::vector<RunGroup> groups = GroupRuns(in.store, ContinualTableSpec(in.suite, in.declared));
  std::vector<Plot> plots;
  for (const std::string& dataset : Datasets(groups)) {
    json values = json::array();
    for (const auto& g : groups) {
      if (ConfigString(g.config, "dataset") != dataset) continue;
      std::vector<std::map<std::string, double>> summaries;
      for (const auto& run : g.runs) summaries.push_back(in.store.Summary(run.id));
      for (const auto& [suffix, reading] : {std::pair{"", "10-way head"}, std::pair{"_task", "task-aware"}}) {
        const std::string prefix = fmt::format("acc_matrix{}/", suffix);
        std::map<std::pair<int64_t, int64_t>, std::vector<double>> cells;
        for (const auto& s : summaries) {
          for (const auto& [key, value] : s) {
            if (key.rfind(prefix, 0) != 0) continue;
            const std::string rest = key.substr(prefix.size());
            const size_t slash = rest.find('/');
            if (slash == std::string::npos || rest.empty() || slash + 1 >= rest.size() ||
                rest.find_first_not_of("0123456789/") != std::string::npos ||
                rest.find('/', slash + 1) != std::string::npos) {
              continue;
            }
            cells[{std::stoll(rest.substr(0, slash)), std::stoll(rest.substr(slash + 1))}].push_back(value);
          }
        }
        for (const auto& [ij, v] : cells) {
          const Cell c = Aggregate(v);
          if (c.n == 0) continue;
          values.push_back({{"panel", SeriesLabel(g) + " — " + reading},
                            {"after", ij.first + 1},
                            {"task", ij.second + 1},
                            {"acc", c.mean},
                            {"std", c.std},
                            {"n", c.n}});
        }
      }
    }
    if (values.empty()) continue;
    const json x = {
        {"field", "task"}, {"type", "ordinal"}, {"title", "accuracy on task j"}, {"axis", {{"labelAngle", 0}}}};
    const json y = {{"field", "after"}, {"type", "ordinal"}, {"title", "after training on task i"}};
    const json heat = {{"mark", "rect"},
                       {"encoding",
                        {{"x", x},
                         {"y", y},
                         {"color",
                          {{"field", "acc"},
                           {"type", "quantitative"},
                           {"title", "accuracy"},
                           {"scale", {{"domain", {0, 1}}, {"scheme", "viridis"}}},
                           {"legend", {{"format", "%"}}}}},
                         {"tooltip",
                          {Field("panel", "nominal", "row"), Field("after", "ordinal", "after task"),
                           Field("task", "ordinal", "on task"), Percent(Field("acc", "quantitative", "mean accuracy")),
                           Percent(Field("std", "quantitative", "std")), Field("n", "quantitative", "runs")}}}}};
    const json labels = {
        {"mark", {{"type", "text"}, {"fontSize", 9}}},
        {"encoding",
         {{"x", x},
          {"y", y},
          {"text", {{"field", "acc"}, {"type", "quantitative"}, {"format", ".0%"}}},
          {"color", {{"condition", {{"test", "datum.acc < 0.5"}, {"value", "white"}}}, {"value", "black"}}}}}};
    Plot plot;
    plot.name = "accuracy-matrix/" + dataset;
    plot.title = fmt::format("Continual accuracy matrix ({})", dataset);
    plot.caption =
        "R[i][j]: accuracy on task j after training on task i (tasks numbered from 1), the mean over the "
        "continual table row's seeds; the 10-way head and the task-aware reading (argmax within each "
        "task's own classes). Forgetting is what the columns lose going down.";
    plot.spec = Spec(plot.title, std::move(values));
    // The panel's name on two lines (the row, then the reading): one line is wider than the panel.
    plot.spec["facet"] = {{"field", "panel"},
                          {"type", "nominal"},
                          {"title", nullptr},
                          {"header", {{"labelExpr", "split(datum.label, ' — ')"}, {"labelLimit", 240}}}};
    plot.spec["columns"] = 4;
    plot.spec["spec"] = {{"width", 190}, {"height", 190}, {"layer", {heat, labels}}};
    plots.push_back(std::move(plot));
  }
  return plots;
}

// Bootstrapping: the target's learning curve (curve/acc) per method and source control, the
// mean over the row's seeds at each evaluated step, one plot per task and source → target pair;
// random_init, the reference every row is compared with, is one of the lines.
std::vector<Plot> LearningCurves(const PlotInput& in) {
  const std::vector<RunGroup> groups = GroupRuns(in.store, BootstrapTableSpec(in.suite, in.declared));
  std::map<std::pair<std::string, std::string>, json> values;  // (dataset, pair) → points
  for (const auto& g : groups) {
    const std::string dataset = ConfigString(g.config, "dataset");
    const std::string pair = g.keys.size() > 1 ? g.keys[1] : "";
    std::string series;
    for (size_t i = 2; i < g.keys.size(); ++i) {
      if (!g.keys[i].empty()) series += (series.empty() ? "" : " · ") + g.keys[i];
    }
    if (!g.variant.empty()) series += " (" + g.variant + ")";
    for (const auto& run : g.runs) {
      for (const auto& row : in.store.Metrics(run.id)) {
        if (row.key != "curve/acc" || !std::isfinite(row.value)) continue;
        json v = RunFields(run);
        v.update({{"series", series}, {"step", row.step}, {"acc", row.value}});
        auto [it, fresh] = values.try_emplace({dataset, pair}, json::array());
        it->second.push_back(std::move(v));
      }
    }
  }
  std::vector<Plot> plots;
  for (auto& [key, points] : values) {
    const auto& [dataset, pair] = key;
    const json x = {{"field", "step"}, {"type", "quantitative"}, {"title", "training steps"}};
    const json color = {{"field", "series"}, {"type", "nominal"}, {"title", "Method · source"}, {"legend", {{"labelLimit", 360}}}};
    const json means = {
        {"mark", {{"type", "line"}, {"point", true}, {"strokeWidth", 2}}},
        {"encoding",
         {{"x", x},
          {"y",
           {{"aggregate", "mean"},
            {"field", "acc"},
            {"type", "quantitative"},
            {"title", "test accuracy"},
            {"axis", {{"format", "%"}}}}},
          {"color", color},
          {"tooltip",
           {Field("series", "nominal", "method · source"),
            Field("step", "quantitative", "step"),
            {{"aggregate", "mean"}, {"field", "acc"}, {"type", "quantitative"}, {"title", "mean"}, {"format", ".1%"}},
            {{"aggregate", "count"}, {"type", "quantitative"}, {"title", "runs"}}}}}}};
    Plot plot;
    plot.name = "learning-curves/" + dataset + "/" + pair;
    plot.title = fmt::format("Learning curves: {} ({})", pair, dataset);
    plot.caption =
        "Test accuracy of the target as it trains from each method's initialisation, the mean over the "
        "row's seeds at each evaluated step; random_init is the reference, source=shuffled and "
        "source=random the controls whose knowledge was destroyed.";
    plot.spec = Spec(plot.title, std::move(points));
    plot.spec["width"] = 560;
    plot.spec["height"] = 320;
    plot.spec["layer"] = {means};
    plots.push_back(std::move(plot));
  }
  return plots;
}

}  // namespace

const std::vector<PlotEntry>& PlotRegistry() {
  // A protocol's plot is one entry here.
  static const std::vector<PlotEntry> registry = {
      {"transfer-preservation", "Transfer against preservation", "surgery", "datasets with surgery runs",
       TransferPreservation},
      {"training-depth", "Training depth", "surgery", "datasets whose training-depth table has a row", TrainingDepth},
      {"finetune", "Fine-tuning the merged model", "merge", "datasets with merge runs that logged iid_acc",
       FinetuneCurves},
      {"accuracy-matrix", "Continual accuracy matrix", "continual", "datasets with continual runs", AccuracyMatrix},
      {"learning-curves", "Learning curves", "bootstrap", "task and source → target pairs with bootstrap runs",
       LearningCurves},
  };
  return registry;
}

std::vector<Plot> BuildPlots(const PlotInput& input) {
  std::vector<Plot> out;
  for (const PlotEntry& entry : PlotRegistry()) {
    for (Plot& p : entry.build(input)) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace tb
