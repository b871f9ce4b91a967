// Benchmark of the reference recipe (single-sample CD-3, H 100, 25000 iterations on threes):
// the CPU build and, when built with CUDA and a device is usable, the CUDA build's fused engine and
// its GEMV path with and without a CUDA graph, in the same run on the same work; optionally the
// sheet's numpy code.
// Prints medians, microseconds per iteration, FLOPs per iteration and the fraction of the CPU
// core's measured FMA peak, and the speedups; then the wall time of the whole commands (rbm_cpu,
// and rbm_cuda with either engine when a device is usable), which adds their start, data loading,
// metrics and files.
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/flags.hpp"
#include "bench/peak.hpp"
#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/simd.hpp"
#ifdef RBM_BENCH_CUDA
#include "kernels/cuda_backend.hpp"
#endif

namespace rbm {
namespace {

struct Options {
  int64_t iters = 25000;
  int repeats = 5;
  std::string data = "data/mnist";
  Split split = Split::train;
  bool numpy = false;
  bool fused = true;  // --no-fused: leave the fused engine out (scripts/device_check, after a hang)
};

using bench::median;

// Seconds of `iters` training iterations, the results copied back (which waits for a device).
double time_training(Backend& backend, const Dataset& train, const Recipe& recipe) {
  backend.stage(train);
  backend.set_params(init_params(recipe, train));
  backend.train_cd(recipe, 0, std::min<int64_t>(100, recipe.iters));  // warm-up
  (void)backend.get_params();
  const auto start = std::chrono::steady_clock::now();
  backend.train_cd(recipe, 100, recipe.iters);
  (void)backend.get_params();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One core's FMA peak (bench/peak.hpp) is the limit the CPU build is measured against.
using bench::measure_core_fma_peak;

// What a shell command printed (stdout and stderr together) and whether it exited with 0.
struct CommandOutput {
  bool ok = false;
  std::string text;
};
CommandOutput run_shell(const std::string& command) {
  CommandOutput out;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) out.text += line;
  out.ok = pclose(pipe) == 0;
  return out;
}

// The last `count` lines of text: a traceback's or an error message's end.
std::string last_lines(std::string text, int count) {
  for (int lines = 0, at = static_cast<int>(text.size()) - 2; at >= 0; --at) {
    if (text[static_cast<size_t>(at)] == '\n' && ++lines == count) {
      text.erase(0, static_cast<size_t>(at) + 1);
      break;
    }
  }
  return text;
}

// Runs the sheet's numpy program once (it takes tens of seconds) on --data's images: its training
// time (-1 when no "seconds" line came or it failed), and what it printed.
struct NumpyRun {
  double seconds = -1.0;
  std::string output;
};
NumpyRun time_numpy_sheet(const Options& o) {
  const CommandOutput out =
      run_shell("OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/sheet_numpy.py --iters " +
                std::to_string(o.iters) + " --split " + split_name(o.split) + " --mnist " +
                bench::shell_quote(o.data));
  NumpyRun run{.seconds = -1.0, .output = out.text};
  if (const char* p = std::strstr(out.text.c_str(), "seconds ")) run.seconds = std::atof(p + 8);
  if (!out.ok) run.seconds = -1.0;
  return run;
}

// The whole command a user runs, `BINARY --iters N --data DIR --split S --out TMP [EXTRA]` in a new
// process: its start, loading the images, the metrics at every --log-every, the checkpoints and
// the final files, besides the training. Median wall seconds over `repeats`, or the failure's last
// lines.
struct CommandTime {
  double seconds = -1.0;
  std::string failure;
};
// The stop signals (Ctrl-C, SIGTERM, SIGHUP) held while in scope: one received is recorded, and
// acted on by the holder when the command in progress returns (a command stopped by the same
// signal, as Ctrl-C stops the whole process group, returns at once). A signal that was ignored
// (nohup's SIGHUP) stays ignored.
// Lock-free, so a handler may store it on whichever thread the signal lands on.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
void record_stop_signal(int signal_number) { g_stop_signal.store(signal_number); }
class StopSignalsHeld {
 public:
  StopSignalsHeld() {
    struct sigaction hold {};
    hold.sa_handler = record_stop_signal;
    hold.sa_flags = SA_RESTART;  // the command's output is read, and it is waited for, to its end
    sigemptyset(&hold.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) {
      sigaction(kSignals[i], nullptr, &saved_[i]);
      if (saved_[i].sa_handler != SIG_IGN) sigaction(kSignals[i], &hold, nullptr);
    }
  }
  ~StopSignalsHeld() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &saved_[i], nullptr);
  }
  StopSignalsHeld(const StopSignalsHeld&) = delete;
  StopSignalsHeld& operator=(const StopSignalsHeld&) = delete;
  int received() const { return g_stop_signal.load(); }

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> saved_{};
};

CommandTime time_whole_command(const std::filesystem::path& binary,
                               const std::vector<std::string>& extra, const Options& o) {
  if (!std::filesystem::exists(binary)) return {.failure = binary.string() + " is not built"};
  std::error_code error;
  std::string pattern =
      (std::filesystem::temp_directory_path(error) / "bench_recipe-XXXXXX").string();
  if (error || mkdtemp(pattern.data()) == nullptr) {
    return {.failure = "cannot make a temporary directory in " + pattern};
  }
  const std::filesystem::path scratch = pattern;
  CommandTime result;
  std::vector<double> times;
  // A stop signal waits for the command in progress, and the scratch directory goes before it
  // takes effect: it was left in /tmp (exploratory tester).
  {
    const StopSignalsHeld held;
    for (int r = 0; r < o.repeats && result.failure.empty() && held.received() == 0; ++r) {
      std::string command = bench::shell_quote(binary.string()) + " --iters " +
                            std::to_string(o.iters) + " --data " + bench::shell_quote(o.data) +
                            " --split " + split_name(o.split) + " --out " +
                            bench::shell_quote((scratch / ("run" + std::to_string(r))).string());
      for (const std::string& arg : extra) command += " " + bench::shell_quote(arg);
      const auto start = std::chrono::steady_clock::now();
      const CommandOutput out = run_shell(command);
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      if (!out.ok) result.failure = "failed: " + last_lines(out.text, 3);
    }
  }  // the signals' own actions again: one that came until now is in g_stop_signal
  const int stop_signal = g_stop_signal.load();
  std::filesystem::remove_all(scratch, error);
  if (stop_signal != 0) std::raise(stop_signal);  // its own action now, as if never held
  if (result.failure.empty()) result.seconds = median(times);
  return result;
}

int run(const Options& o) {
  // Checked before minutes of timing: the numpy program's path is relative to the repository root.
  if (o.numpy && !std::filesystem::exists("bench/sheet_numpy.py")) {
    throw std::runtime_error(
        "--numpy runs bench/sheet_numpy.py, which is not in this directory: run from the "
        "repository root");
  }
  const double peak = measure_core_fma_peak();  // first, on a quiet core
  const Dataset train = load_mnist(o.data, 3, o.split);
  Recipe recipe;
  recipe.iters = o.iters;
  // Operation counts per iteration, k = 3, d = 784, H = 100. A dense implementation does 7
  // matrix-vector products (4 with W', 3 with W) and a rank-2 update: 7 * 2dH + 2 * 2dH FLOPs.
  const double d = 784, H = recipe.hidden, k = recipe.k;
  const double dense_flops = (2 * k + 1) * 2 * d * H + 2 * 2 * d * H;
  // The CPU build uses x as binary: W'x is a sum of |x| rows (|x| = the image's ones, about the
  // data's mean for x0 and similar for the samples), the update touches 2 |x| rows.
  double mean_ones = 0.0;
  for (const uint8_t v : train.pixels) mean_ones += v;
  mean_ones /= static_cast<double>(train.rows);
  const double binary_flops = (k + 1) * mean_ones * H + k * 2 * d * H + 2 * 2 * mean_ones * H;

  std::printf(
      "reference recipe: %lld iterations of single-sample CD-%d, H %d, %lld threes (%s), "
      "median of %d\n",
      static_cast<long long>(o.iters), recipe.k, recipe.hidden, static_cast<long long>(train.rows),
      split_name(o.split), o.repeats);
  std::printf(
      "work per iteration: dense %.3f MFLOP; as the CPU build does it (x binary, "
      "%.0f ones per image) %.3f MFLOP; its kernels in %s (host/simd.hpp)\n",
      dense_flops / 1e6, mean_ones, binary_flops / 1e6, cpu::simd_name(cpu::simd()));

  struct Row {
    std::string build;
    std::function<std::unique_ptr<Backend>()> make;
    std::string unavailable;  // why the row is not measured, e.g. "no device: ..."
  };
  // The CPU build with its single-sample shards on one thread and on two (fixed, where rbm_cpu
  // chooses by timing): the same arithmetic, so the same results.
  std::vector<Row> rows = {
      {"cpu 1 thread", [] { return make_cpu_backend(CpuOptions{.recipe_threads = 1}); }, ""},
      {"cpu 2 threads", [] { return make_cpu_backend(CpuOptions{.recipe_threads = 2}); }, ""}};
#ifdef RBM_BENCH_CUDA
  const std::string reason = usable_device_or_reason();
  const std::string no_device = reason.empty() ? "" : "no device: " + reason;
  rows.push_back(
      {"cuda gemv", [] { return make_cuda_backend(CudaOptions{.use_graph = false}); }, no_device});
  rows.push_back(
      {"cuda gemv+graph",
       [] { return make_cuda_backend(CudaOptions{.use_graph = true, .graph_fallback = false}); },
       no_device});
  rows.push_back({"cuda fused",
                  [] { return make_cuda_backend(CudaOptions{.engine = CudaEngine::fused}); },
                  o.fused ? no_device : "left out (--no-fused)"});
#else
  rows.push_back({"cuda", nullptr, "not built (no CUDA toolkit at configure time)"});
#endif

  std::printf("\n%-18s %10s %10s %12s %10s\n", "build", "median s", "us/iter", "GFLOP/s(bin)",
              "vs cpu 1t");
  double cpu_seconds = 0.0, best_cpu_seconds = 1e300;
  for (const Row& row : rows) {
    if (!row.unavailable.empty()) {
      std::printf("%-18s %s\n", row.build.c_str(), row.unavailable.c_str());
      continue;
    }
    std::unique_ptr<Backend> backend = row.make();
    std::vector<double> times;
    for (int r = 0; r < o.repeats; ++r) times.push_back(time_training(*backend, train, recipe));
    const double seconds = median(times);
    if (row.build == "cpu 1 thread") cpu_seconds = seconds;
    best_cpu_seconds =
        row.build.starts_with("cpu") ? std::min(best_cpu_seconds, seconds) : best_cpu_seconds;
    std::printf("%-18s %10.4f %10.2f %12.2f %9.2fx\n", row.build.c_str(), seconds,
                1e6 * seconds / static_cast<double>(o.iters),
                binary_flops * static_cast<double>(o.iters) / seconds / 1e9, cpu_seconds / seconds);
  }

  // What a user waits for: the same recipe as the commands rbm_cpu and rbm_cuda (built beside
  // this benchmark) run it, with the caller's RBM_CPU_THREADS (if any) and their default engine.
  std::printf(
      "\nwhole command (a new process: loading the images, metrics at the default --log-every, "
      "checkpoints, the final files), median of %d:\n",
      o.repeats);
  const std::filesystem::path here = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  // rbm_cuda with its default engine, and with the fused one (issue 8: which becomes the default).
  const std::vector<std::pair<const char*, std::vector<std::string>>> commands = {
      {"rbm_cpu", {}}, {"rbm_cuda", {}}, {"rbm_cuda", {"--engine", "fused"}}};
  for (const auto& [name, extra] : commands) {
    std::string shown = std::string(name) + " --iters " + std::to_string(o.iters) + " --split " +
                        split_name(o.split);
    for (const std::string& arg : extra) shown += " " + arg;
#ifdef RBM_BENCH_CUDA
    if (std::strcmp(name, "rbm_cuda") == 0 && !reason.empty()) {
      std::printf("%-52s no device: %s\n", shown.c_str(), reason.c_str());
      continue;
    }
#else
    if (std::strcmp(name, "rbm_cuda") == 0) {
      std::printf("%-52s not built (no CUDA toolkit at configure time)\n", shown.c_str());
      continue;
    }
#endif
    const CommandTime command = time_whole_command(here / name, extra, o);
    if (command.seconds < 0) {
      std::printf("%-52s %s\n", shown.c_str(), command.failure.c_str());
    } else {
      std::printf("%-52s %8.3f s wall\n", shown.c_str(), command.seconds);
    }
  }

  const double cpu_rate = binary_flops * static_cast<double>(o.iters) / cpu_seconds / 1e9;
  std::printf(
      "\nCPU limit: one core's measured fp32 FMA peak (%s) %.1f GFLOP/s. One thread does %.1f "
      "GFLOP/s of its work = %.1f%% of that peak (%.2f us/iteration against a pure-FMA floor of "
      "%.2f us): the recipe is a chain of dependent matrix-vector steps that stream W "
      "(%.0f KB) from L2 three times per iteration, so the core waits on L2 bandwidth, "
      "not on FMAs.\n",
      bench::fma_peak_isa(), peak, cpu_rate, 100.0 * cpu_rate / peak,
      1e6 * cpu_seconds / static_cast<double>(o.iters), 1e6 * binary_flops / (peak * 1e9),
      d * H * 4 / 1e3);
  if (o.numpy) {
    const NumpyRun numpy = time_numpy_sheet(o);
    const double numpy_seconds = numpy.seconds;
    if (numpy_seconds > 0) {
      std::printf(
          "numpy sheet (1 run, one BLAS thread): %.2f s = %.1f us/iteration; the CPU build is "
          "%.1fx faster on one thread, %.1fx at its best\n",
          numpy_seconds, 1e6 * numpy_seconds / static_cast<double>(o.iters),
          numpy_seconds / cpu_seconds, numpy_seconds / best_cpu_seconds);
    } else {
      // Its last lines: a traceback's are the error.
      const std::string tail = last_lines(numpy.output, 6);
      std::printf("numpy sheet: /usr/bin/python3 bench/sheet_numpy.py failed%s\n%s",
                  tail.empty() ? " (no output)" : "; its last lines:", tail.c_str());
      return 1;  // asked for and not measured
    }
  }
  return 0;
}

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  rbm::Options o;
  return rbm::bench::bench_main(
      argc, argv,
      {rbm::bench::int_flag<int64_t>("--iters", o.iters, 1, int64_t{1} << 40),
       rbm::bench::int_flag("--repeats", o.repeats, 1, 1000),
       {"--data", [&](const std::string& v) { o.data = v; }},
       {"--split", [&](const std::string& v) { o.split = rbm::parse_split(v); }},
       rbm::bench::switch_flag("--numpy", [&] { o.numpy = true; }),
       rbm::bench::switch_flag("--no-fused", [&] { o.fused = false; })},
      "bench_recipe [--iters N] [--repeats R] [--data DIR] [--split S] [--numpy] [--no-fused]\n"
      "The reference recipe (single-sample CD-3, H 100) on the threes of --split (default train)\n"
      "in --data (default data/mnist), --iters iterations (default 25000), the median of\n"
      "--repeats runs (default 5): on the CPU build and, where a device is usable, on the CUDA\n"
      "build's fused engine and its GEMV path with and without a CUDA graph. --numpy also times\n"
      "the sheet's numpy code once (bench/sheet_numpy.py: run from the repository root).\n"
      "--no-fused leaves the fused engine out (scripts/device_check does, should it hang).",
      [&] { return rbm::run(o); });
}
