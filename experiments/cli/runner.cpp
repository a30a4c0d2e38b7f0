#include "experiments/cli/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "experiments/cli/console.h"
#include "experiments/cli/environment.h"
#include "store/errors.h"
#include "store/hash.h"
#include "store/logger.h"
#include "store/wandb.h"

namespace tb {

void CommonOptions::Bind(Options& o) {
  o.Add("seed", &seed, "run seed (the protocol derives its models' seeds from it)");
  o.Add("source", &source, "source control: trained, or its knowledge destroyed", {"trained", "random", "shuffled"});
  o.Add("threads", &threads, "intra-op threads (0: all cores)");
  o.Add("device", &device, "compute device", {"auto", "cpu", "cuda"});
}

PreparedRun PrepareRun(const RunRequest& request) {
  PreparedRun p;
  p.request = request;
  if (!request.suite.empty()) CheckSuiteName(request.suite);
  p.method = Methods().Find(request.method).make();
  p.protocol = Protocols().Find(p.method->protocol()).make();
  Options all;
  p.config.Bind(all);
  all.Merge(p.protocol->options());
  all.Merge(p.method->options());
  for (const auto& [key, value] : request.settings) {
    if (key.rfind("wandb.", 0) == 0) {
      p.wandb[key] = value.is_string() ? value.get<std::string>() : value.dump();
    } else if (!p.protocol->SetShorthand(key, value, all)) {
      all.Set(key, value);
    }
  }
  if (p.config.seed < 0) throw BadInput(fmt::format("seed={}: expected >= 0", p.config.seed));
  if (p.config.threads < 0) throw BadInput(fmt::format("threads={}: expected 0 (all cores) or a positive count", p.config.threads));
  p.protocol->CheckScenario();
  p.protocol->CheckSeed(p.config.seed);
  WandbSettings::Resolve(p.wandb);  // a bad wandb.* value or WANDB_MODE is bad input too
  p.protocol->CheckMethod(*p.method, request.method);
  const torch::Device device = ResolveDevice(p.config.device);
  const nlohmann::json identity = p.protocol->Identity();
  p.config_json = all.ToJson();
  p.config_json["threads"] =
      p.config.threads > 0 ? p.config.threads : UsableCores();
  p.config_json["device"] = device.str();
  p.config_json["method"] = request.method;
  for (const auto& [k, v] : identity.items()) p.config_json[k] = v;
  p.config_json["runner_version"] = kRunnerVersion;
  p.config_hash = JsonHash(p.config_json);
  p.label = fmt::format("{} {} seed {} source {}", request.method, p.protocol->Label(), p.config.seed, p.config.source);
  return p;
}

DeclaredOptions DeclaredDefaults() {
  DeclaredOptions d;
  CommonOptions common;
  Options common_options;
  common.Bind(common_options);
  d.run = common_options.ToJson();
  for (const auto& name : Protocols().Names()) d.scenario[name] = Protocols().Find(name).make()->options().ToJson();
  for (const auto& name : Methods().Names()) {
    auto m = Methods().Find(name).make();
    d.method[name] = m->options().ToJson();
    d.protocol[name] = m->protocol();
  }
  return d;
}

std::vector<std::string> OptionNames(const std::string& method) {
  auto m = Methods().Find(method).make();
  auto run = Protocols().Find(m->protocol()).make();
  CommonOptions common;
  Options all;
  common.Bind(all);
  all.Merge(run->options());
  all.Merge(m->options());
  return all.Names();
}

std::string RunHelp(const std::string& method) {
  const MethodInfo& info = Methods().Find(method);
  auto m = info.make();
  const ProtocolInfo& protocol = Protocols().Find(m->protocol());
  auto run = protocol.make();
  CommonOptions common;
  Options run_options;
  common.Bind(run_options);
  run_options.Merge(run->options());
  return fmt::format("{} — {}\nreference: {}\nprotocol: {} ({})\n{}\nmethod options:\n{}\nrun options:\n{}", info.name,
                     info.display_name, info.reference, protocol.name, protocol.description, run->Describe(*m),
                     m->options().Help(), run_options.Help());
}

RunOutcome ExecuteRun(PreparedRun& run, const ResultPaths& paths, const ExecuteOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  RunOutcome out;
  std::error_code ec;
  std::filesystem::create_directories(paths.results_dir, ec);
  if (ec) throw BadInput(fmt::format("--results {}: cannot create the directory ({})", paths.results_dir, ec.message()));
  RunStore store(paths.store_path());
  if (options.skip_finished) {
    if (auto id = store.FinishedRunWithHash(run.config_hash)) {
      // Finished by another process since the suite started: it is this suite's too.
      if (!run.request.suite.empty()) store.TagSuiteMembers({*id}, run.request.suite);
      out.run_id = *id;
      out.status = RunStatus::kFinished;
      out.exit_code = 0;
      out.skipped = true;
      out.summary = store.Summary(*id);
      return out;
    }
  }
  const CommonOptions& c = run.config;
  ConfigureTorch(c.threads);
  WarnIfReferenceBlas();
  CheckBlasOnce();  // a BLAS that multiplies wrongly must not measure anything
  const torch::Device device = ResolveDevice(c.device);

  NewRun record;
  record.suite = run.request.suite;
  record.method = run.request.method;
  record.scenario = run.protocol->ScenarioName();
  record.dataset = run.protocol->Dataset();
  record.seed = c.seed;
  record.config = run.config_json;
  record.config_hash = run.config_hash;
  record.environment = CaptureEnvironment(device);
  const GitState git = SourceGitState();
  record.git_commit = git.commit;
  record.git_dirty = git.dirty;
  record.tags = run.request.tags;
  out.run_id = store.CreateRun(record);

  FanOutLogger log;
  log.Add(std::make_unique<SqliteLogger>(paths.store_path(), out.run_id));
  log.Add(std::make_unique<ConsoleLogger>(options.verbose));
  // The W&B mirror reads what the SQLite logger committed, so it comes after it.
  if (WandbSettings wandb = WandbSettings::Resolve(run.wandb); wandb.Online()) {
    log.Add(std::make_unique<WandbLogger>(paths.store_path(), out.run_id, wandb));
  }
  try {
    ProtocolContext ctx{paths, store, log, device, c.seed, c.source, run.request.method, BlasIdentity()};
    MetricMap summary = run.protocol->Execute(*run.method, ctx);
    summary["time/total_seconds"] = elapsed();
    log.Summary(summary);
    log.RunEnded(RunStatus::kFinished, 0, "");
    out.status = RunStatus::kFinished;
    out.exit_code = 0;
    out.summary = summary;
  } catch (const BadInput& e) {
    out.error = e.what();
    out.exit_code = 2;
    log.RunEnded(RunStatus::kFailed, 2, out.error);
  } catch (const c10::Error& e) {
    out.error = e.what_without_backtrace();
    log.RunEnded(RunStatus::kFailed, 1, out.error);
  } catch (const std::exception& e) {
    out.error = e.what();
    log.RunEnded(RunStatus::kFailed, 1, out.error);
  }
  out.seconds = elapsed();
  return out;
}

}  // namespace tb
