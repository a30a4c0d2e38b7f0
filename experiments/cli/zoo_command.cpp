#include "experiments/cli/zoo_command.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "experiments/cli/console.h"
#include "experiments/cli/environment.h"
#include "experiments/cli/guarded.h"
#include "experiments/train/zoo_grid.h"
#include "store/errors.h"


namespace tb {
namespace {

std::string Duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}

template <class Body>
int Checked(Body&& body) {
  try {
    body();
    return 0;
  } catch (const BadInput& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int BuildZooGrid(const ZooGrid& grid, const std::string& results, int64_t jobs, int64_t threads, const std::string& device) {
  if (jobs < 1) throw BadInput(fmt::format("--jobs {}: expected >= 1", jobs));
  const int64_t cores = UsableCores();
  if (threads < 0) throw BadInput(fmt::format("--threads {}: expected >= 0 (0: cores / jobs)", threads));
  if (threads == 0) threads = std::max<int64_t>(1, cores / jobs);
  std::filesystem::create_directories(results);
  const std::string store_path = (std::filesystem::path(results) / "runs.db").string();
  RunStore store(store_path);
  // The progress line counts unit records in SQL (cheap, every half second); the final line
  // counts the units done under the grid's current settings.
  const int64_t before = store.CountGridUnits(grid.name);
  std::vector<pid_t> workers;
  for (int64_t w = 0; w < jobs; ++w) {
    std::vector<std::string> args = {"transferbench", "--results", results, "zoo", "build", grid.path,
                                     "--worker", fmt::format("{}/{}", w, jobs), "--threads", std::to_string(threads),
                                     "--device", device};
    workers.push_back(SpawnSelf(args, "zoo worker"));
  }
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0;
  size_t running = workers.size();
  double next_line = 0;
  while (running > 0) {
    for (auto& pid : workers) {
      if (pid == 0) continue;
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        pid = 0;
        --running;
      }
    }
    const int64_t done = store.CountGridUnits(grid.name);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = s > 0 ? static_cast<double>(done - before) / s * 60 : 0;
    const int64_t left = grid.Units() - done;
    // A terminal gets one line updated in place; a log, a line every 30 seconds and the last.
    const bool tty = StderrIsTerminal();
    if (tty || running == 0 || s >= next_line) {
      std::cerr << fmt::format("{}zoo {}: {}/{} units, {:.1f} units/min ({} checkpoints each), {} elapsed, ETA {}{}",
                               tty ? "\r" : "", grid.name, done, grid.Units(), rate, grid.checkpoints.size(), Duration(s),
                               rate > 0 ? Duration(static_cast<double>(left) / rate * 60) : std::string("?"),
                               tty ? "   " : "\n")
                << std::flush;
      next_line = s + 30;
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t trained = store.CountGridUnits(grid.name) - before;
  const int64_t done = ZooUnitsDone(store, grid);
  if (StderrIsTerminal()) std::cerr << "\n";
  std::cout << fmt::format("zoo {}: {} units trained in {} ({} workers x {} threads, {:.2f} units/min); {}/{} done\n",
                           grid.name, trained, Duration(s), jobs, threads,
                           s > 0 ? static_cast<double>(trained) / s * 60 : 0.0, done, grid.Units());
  return failed;
}

void AddZooCommand(CLI::App& app, const std::string& results, int& code) {
  auto* zoo = app.add_subcommand("zoo", "build, list and export the zoo grids of experiments/zoos/ (resumable)");
  zoo->require_subcommand(1);
  static std::string grid_name, worker, device = "auto", format = "csv", out;
  static int64_t jobs = 2, threads = 0;
  auto* build = zoo->add_subcommand("build", "train a grid's models (resumes; --jobs worker processes)");
  build->add_option("grid", grid_name, "grid name (experiments/zoos/NAME.json) or file")->required();
  build->add_option("--jobs", jobs, "worker processes (default 2: measured faster than 1 x 2 threads here)");
  build->add_option("--threads", threads, "intra-op threads per worker (0: cores / jobs)");
  build->add_option("--device", device, "compute device: auto, cpu or cuda");
  build->add_option("--worker", worker, "internal: build shard I/N in this process");
  build->callback([&] {
    code = Checked([&] {
      const ZooGrid grid = LoadZooGrid(grid_name);
      if (worker.empty()) {
        code = BuildZooGrid(grid, results, jobs, threads, device);
        if (code != 0) throw std::runtime_error(fmt::format("a zoo worker failed (exit code {})", code));
        return;
      }
      const auto slash = worker.find('/');
      const int64_t offset = std::stoll(worker.substr(0, slash)), stride = std::stoll(worker.substr(slash + 1));
      ConfigureTorch(threads);
      BuildZooShard(grid, results, offset, stride, device, BlasIdentity());
    });
  });
  auto* ls = zoo->add_subcommand("ls", "counts and accuracies of a grid's models by activation x init x epoch bin");
  ls->add_option("grid", grid_name, "grid name or file")->required();
  ls->callback([&] {
    code = Checked([&] {
      const ZooGrid grid = LoadZooGrid(grid_name);
      RunStore store((std::filesystem::path(results) / "runs.db").string());
      std::cout << ZooListing(store, grid);
    });
  });
  auto* exp = zoo->add_subcommand("export", "write a grid's checkpoints as CSV (the report's layout) or a tensor file");
  exp->add_option("grid", grid_name, "grid name or file")->required();
  exp->add_option("--format", format, "csv or pt");
  exp->add_option("--out", out, "output file (default <results>/zoo/<grid>.<format>)");
  exp->callback([&] {
    code = Checked([&] {
      const ZooGrid grid = LoadZooGrid(grid_name);
      if (format != "csv" && format != "pt") throw BadInput(fmt::format("--format {}: expected csv or pt", format));
      const std::string store_path = (std::filesystem::path(results) / "runs.db").string();
      if (!std::filesystem::exists(store_path)) {
        throw BadInput(fmt::format("zoo grid '{}': nothing built in {} (run `transferbench zoo build {}` first)",
                                   grid.name, results, grid.name));
      }
      RunStore store(store_path);
      const std::string path = out.empty() ? (std::filesystem::path(results) / "zoo" / (grid.name + "." + format)).string() : out;
      const int64_t rows = ExportZoo(store, grid, format, path);
      std::cout << fmt::format("{}: {} checkpoints ({}; index {}.index.json)\n", path, rows, format, path);
    });
  });
}

}  // namespace tb
