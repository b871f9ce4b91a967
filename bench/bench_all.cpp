// The one benchmark command of issue 5: the four workloads on the CPU build and (when a device is
// usable) the CUDA build in the same run, with the plain PyTorch peer (bench/peers/torch_rbm.py)
// beside them when `python3 -c 'import torch'` works. Prints a table (median time or rate per
// build, speedup, achieved FLOP/s as a fraction of the machine's limit, the peer's time and our
// speedup over it) and writes it as JSON to bench/results/bench_all-<UTC time>.json.
//
//   1. the reference recipe: 25000 single-sample CD-3 iterations, H 100, the training threes;
//   2. the many-chain sampler: H in {100, 500}, N in {1024, 65536, 262144}, K = 100 steps;
//   3. one epoch of minibatch PCD-1 on the 60000 training digits, H 500, B 100;
//   4. AIS for H 500, 100 runs x 14500 temperatures.
// The CPU runs fewer chains (sampler) and temperatures (AIS) where the full size would take
// minutes; the table says so, and compares rates. The limits: the CPU's fp32 FMA peak measured
// on all its cores at once (bench/peak.hpp), the GPU's from its attributes (kernels/device_peak).
#include <cblas.h>  // openblas_get_corename: which of its kernels OpenBLAS chose for this CPU
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/flags.hpp"
#include "bench/peak.hpp"
#include "host/ais.hpp"
#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/cpu_threads.hpp"
#include "host/dataset.hpp"
#include "host/gibbs_blocks.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"
#include "host/openblas_kernels.hpp"
#include "host/simd.hpp"
#include "host/version.hpp"
#include "kernels/philox.h"
#ifdef RBM_BENCH_CUDA
#include "kernels/cuda_backend.hpp"
#include "kernels/device_peak.hpp"
#endif

namespace rbm {
namespace {

using bench::median;
using bench::shell_quote;

struct Options {
  std::string data = "data/mnist";
  std::string results = "bench/results";
  std::string peer = "bench/peers/torch_rbm.py";
  std::string python;  // the peer's interpreter; empty: python3, then /usr/bin/python3
  int repeats = 3;
  bool torch = true;
  bool quick = false;  // small sizes everywhere: a smoke test of the harness
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A build to run the workloads on: a backend factory, or why there is none.
struct Build {
  std::string name;  // "cpu" or "cuda"
  std::function<std::unique_ptr<Backend>()> make;
  std::string unavailable;
  double peak_flops = 0.0;  // the limit the FLOP fraction is taken against
};

// One measurement: median seconds of the work done, and the work's size.
struct Measure {
  bool ran = false;
  std::string why_not;  // when not ran
  double seconds = 0.0;
  double units =
      0.0;  // iterations, chain-steps, updates, temperatures x runs: what the rate counts
  double flops = 0.0;  // FLOPs of the measured work
  std::string note;    // e.g. "N 2048" when the size differs from the row's
  double rate() const { return seconds > 0.0 ? units / seconds : 0.0; }
};

struct Row {
  Row(std::string workload_, std::string size_, std::string unit_, bool rate_row_,
      double units_full_)
      : workload(std::move(workload_)),
        size(std::move(size_)),
        unit(std::move(unit_)),
        rate_row(rate_row_),
        units_full(units_full_) {}
  std::string workload, size, unit;  // unit of the rate: "iterations", "chain-steps", ...
  bool rate_row = false;             // compare rates (sizes differ between builds) not seconds
  double units_full = 0.0;           // the row's size in units, for scaling a partial run
  Measure cpu, cuda, torch;
  std::string torch_device;
};

// --- the peer --------------------------------------------------------------------------------

// The interpreter that imports torch: o.python when given, else the first of python3 (PATH) and
// /usr/bin/python3 (Debian's python3-torch) that does; empty when none does.
std::string torch_python(const Options& o) {
  std::vector<std::string> candidates = {"python3", "/usr/bin/python3"};
  if (!o.python.empty()) candidates = {o.python};
  for (const std::string& python : candidates) {
    if (std::system((shell_quote(python) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) {
      return python;
    }
  }
  return "";
}

bool torch_sees_gpu(const std::string& python) {
  return std::system((shell_quote(python) +
                      " -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() "
                      "else 1)' >/dev/null 2>&1")
                         .c_str()) == 0;
}

// Runs the peer with `args`; returns its seconds (and device) from its one output line.
std::optional<double> run_peer(const Options& o, const std::string& python, const std::string& args,
                               std::string* device) {
  const std::string command = shell_quote(python) + " " + shell_quote(o.peer) + " " + args +
                              " --mnist " + shell_quote(o.data) + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  char line[1024];
  std::optional<double> seconds;
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    if (const char* p = std::strstr(line, " seconds ")) seconds = std::atof(p + 9);
    if (const char* p = std::strstr(line, " device ")) {
      *device = std::string(p + 8, std::strcspn(p + 8, " \n"));
    }
  }
  const int status = pclose(pipe);
  if (status != 0) return std::nullopt;
  return seconds;
}

// --- the workloads ---------------------------------------------------------------------------

// FLOPs of one row of a dense (d, H) matrix product: 2 d H.
double row_flops(int d, int H) { return 2.0 * d * H; }

Measure time_recipe(Backend& backend, const Dataset& threes, int64_t iters, int repeats) {
  Recipe recipe;
  recipe.iters = iters;
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    backend.stage(threes);
    backend.set_params(init_params(recipe, threes));
    backend.train_cd(recipe, 0, 100);  // warm-up
    (void)backend.get_params();
    const auto start = std::chrono::steady_clock::now();
    backend.train_cd(recipe, 100, iters);
    (void)backend.get_params();
    times.push_back(seconds_since(start));
  }
  Measure m;
  m.ran = true;
  m.seconds = median(times);
  m.units = static_cast<double>(iters);
  // Done densely: 2k + 1 products with W or W' and a rank-2 update of W.
  m.flops = m.units * ((2.0 * recipe.k + 1.0) + 2.0) * row_flops(784, recipe.hidden);
  return m;
}

// The sampler's steady rate: K steps and 1 step timed (medians), the rate from the difference, so
// that the states' way in and out (host <-> device, bytes <-> floats) does not count.
Measure time_sampler(Backend& backend, const Params& params, int64_t chains, int64_t steps,
                     int repeats) {
  backend.set_params(params);
  const std::vector<uint8_t> start_states = random_initial_states(chains, params.visible, 7);
  std::vector<uint8_t> states = start_states;
  backend.gibbs(states, chains, 7, 0, 1);  // warm-up
  std::vector<double> full, one;
  for (int r = 0; r < repeats; ++r) {
    states = start_states;
    auto start = std::chrono::steady_clock::now();
    backend.gibbs(states, chains, 7, 0, steps);
    full.push_back(seconds_since(start));
    states = start_states;
    start = std::chrono::steady_clock::now();
    backend.gibbs(states, chains, 7, 0, 1);
    one.push_back(seconds_since(start));
  }
  Measure m;
  m.ran = true;
  m.seconds = std::max(1e-9, median(full) - median(one));
  m.units = static_cast<double>(chains) * static_cast<double>(steps - 1);
  m.flops = m.units * 2.0 * row_flops(params.visible, params.hidden);
  m.note = "end to end " + std::to_string(median(full)).substr(0, 6) + " s";
  return m;
}

// `sample`'s path end to end (host/gibbs_blocks.hpp): the chains in blocks, each block's steps in
// pieces of about 0.05 s with the states moved in and out for each piece, as a user's `sample`
// runs them (the steady rate above leaves those moves out).
Measure time_sample_command(Backend& backend, const Params& params, int64_t chains, int64_t steps,
                            int repeats) {
  backend.set_params(params);
  const std::vector<uint8_t> start_states = random_initial_states(chains, params.visible, 7);
  const GibbsBlocks blocks{.block_chains = sample_block_chains(params.visible, params.hidden)};
  std::vector<uint8_t> states = start_states;
  // Warm-up: one step of the first block (the buffers a block needs, allocated once), on that
  // block's states alone.
  const int64_t first_block = std::min(chains, blocks.block_chains);
  gibbs_in_blocks(backend,
                  std::span(states).first(static_cast<size_t>(first_block) *
                                          static_cast<size_t>(params.visible)),
                  first_block, params.visible, 7, 1, blocks);
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    states = start_states;
    const auto start = std::chrono::steady_clock::now();
    gibbs_in_blocks(backend, states, chains, params.visible, 7, steps, blocks);
    times.push_back(seconds_since(start));
  }
  Measure m;
  m.ran = true;
  m.seconds = median(times);
  m.units = static_cast<double>(chains) * static_cast<double>(steps);
  m.flops = m.units * 2.0 * row_flops(params.visible, params.hidden);
  const int64_t n_blocks = (chains + blocks.block_chains - 1) / blocks.block_chains;
  m.note = std::to_string(n_blocks) + (n_blocks == 1 ? " block" : " blocks") + " of at most " +
           std::to_string(blocks.block_chains) + " chains";
  return m;
}

Measure time_pcd(Backend& backend, const Dataset& digits, const Recipe& recipe, int repeats) {
  const int64_t updates = batches_per_epoch(recipe, digits.rows);
  const Params start = init_params(recipe, digits);
  std::vector<double> times;
  backend.stage(digits);
  for (int r = 0; r < repeats; ++r) {
    backend.set_params(start);
    backend.train_minibatch(recipe, 0, 2);  // warm-up (chains initialized, buffers allocated)
    (void)backend.get_params();
    const auto t0 = std::chrono::steady_clock::now();
    backend.train_minibatch(recipe, 2, updates);
    (void)backend.get_params();
    times.push_back(seconds_since(t0));
  }
  Measure m;
  m.ran = true;
  m.seconds = median(times);
  m.units = static_cast<double>(updates);
  const double B = recipe.batch, N = static_cast<double>(negative_samples(recipe)), k = recipe.k;
  // Row products: B + N k + N with W (positive phase, chain steps, negative probabilities), N k
  // with W', and B + N rows into the gradient.
  m.flops = m.units * (2.0 * B + 2.0 * N + 2.0 * N * k) * row_flops(784, recipe.hidden);
  return m;
}

Measure time_ais(Backend& backend, const Params& params, const std::vector<float>& base,
                 int64_t temperatures, int64_t runs, int repeats) {
  AisRequest request;
  request.base_bias = base;
  request.betas = ais_betas(temperatures);
  request.runs = runs;
  backend.set_params(params);
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const AisResult result = backend.ais(request);
    times.push_back(seconds_since(t0));
    if (result.log_weights.size() != static_cast<size_t>(runs)) {
      throw std::runtime_error("AIS returned the wrong number of runs");
    }
  }
  Measure m;
  m.ran = true;
  m.seconds = median(times);
  m.units = static_cast<double>(temperatures) * static_cast<double>(runs);
  // Per temperature and run: x W (the weight and the hidden draw) and h W' (the visible draw).
  m.flops = m.units * 2.0 * row_flops(params.visible, params.hidden);
  return m;
}

// --- the table -------------------------------------------------------------------------------

std::string format_seconds_or_rate(const Row& row, const Measure& m) {
  if (!m.ran) return m.why_not;
  char text[64];
  if (row.rate_row) {
    std::snprintf(text, sizeof text, "%.3g/s", m.rate());
  } else {
    std::snprintf(text, sizeof text, "%.3f s", m.seconds * row.units_full / m.units);
  }
  return text;
}

// Seconds of the row's full work (scaled from a partial run), for speedups and the table.
double full_seconds(const Row& row, const Measure& m) {
  return m.ran && m.units > 0 ? m.seconds * row.units_full / m.units : 0.0;
}

double speedup(const Row& row, const Measure& fast, const Measure& slow) {
  if (!fast.ran || !slow.ran) return 0.0;
  return row.rate_row ? fast.rate() / slow.rate()
                      : full_seconds(row, slow) / full_seconds(row, fast);
}

// Above 100% (marked "!") the peak measured on a busy machine was lowered more than the work's
// rate was: the table's notes say so.
std::string percent(const Measure& m, double peak) {
  if (!m.ran || peak <= 0.0 || m.seconds <= 0.0) return "-";
  const double value = 100.0 * m.flops / m.seconds / peak;
  char text[32];
  std::snprintf(text, sizeof text, "%.1f%%%s", value, value > 100.0 ? "!" : "");
  return text;
}

std::string ratio(double x) {
  if (x <= 0.0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.1fx", x);
  return text;
}

nlohmann::json measure_json(const Row& row, const Measure& m, double peak) {
  if (!m.ran) return {{"ran", false}, {"why_not", m.why_not}};
  nlohmann::json j = {{"ran", true},
                      {"seconds", m.seconds},
                      {"units", m.units},
                      {"unit", row.unit},
                      {"rate_per_s", m.rate()},
                      {"flops", m.flops},
                      {"flops_per_s", m.flops / m.seconds},
                      {"full_seconds", full_seconds(row, m)}};
  if (peak > 0.0) j["fraction_of_peak"] = m.flops / m.seconds / peak;
  if (!m.note.empty()) j["note"] = m.note;
  return j;
}

std::string utc_stamp(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, format, &utc);
  return text;
}

int run(const Options& o) {
  // What the flags name is checked before minutes of measuring: the results directory, the
  // images, and an interpreter the user named for the peer.
  std::error_code error;
  std::filesystem::create_directories(o.results, error);
  if (error || !std::filesystem::is_directory(o.results) ||
      access(o.results.c_str(), W_OK | X_OK) != 0) {
    std::fprintf(stderr, "bench_all: --results %s: not a directory it can write in%s\n",
                 o.results.c_str(), error ? (" (" + error.message() + ")").c_str() : "");
    return 2;
  }
  const Dataset threes = load_mnist(o.data, 3, Split::train);
  const std::string python = o.torch ? torch_python(o) : "";
  if (o.torch && !o.python.empty() && python.empty()) {
    std::fprintf(stderr,
                 "bench_all: --python %s: `%s -c 'import torch'` fails (--no-torch leaves the "
                 "peer out)\n",
                 o.python.c_str(), o.python.c_str());
    return 2;
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  double load = 0.0;
  (void)getloadavg(&load, 1);
  std::printf("bench_all: measuring the CPU's fp32 FMA peak on %d cores (load average %.2f)...\n",
              cores, load);
  // Measured again at the end, and the larger taken: other work on the machine lowers both the
  // peak and our rates; the load averages are printed and kept with the results.
  double cpu_peak = bench::measure_machine_fma_peak(cores) * 1e9;

  std::vector<Build> builds;
  builds.push_back({"cpu", [] { return make_cpu_backend(); }, "", cpu_peak});
  std::string gpu_peak_text;
#ifdef RBM_BENCH_CUDA
  const std::string reason = usable_device_or_reason();
  // rbm_cuda's default engine for the recipe: fused where the device holds it, else gemv.
  builds.push_back({"cuda", [] { return make_cuda_backend({.engine = CudaEngine::fused_or_gemv}); },
                    reason.empty() ? "" : "no device",
                    reason.empty() ? cuda_fp32_peak_flops() : 0.0});
  if (reason.empty()) gpu_peak_text = cuda_fp32_peak_description();
  const std::string cuda_note = reason.empty() ? make_cuda_backend()->device_description() : reason;
#else
  builds.push_back({"cuda", nullptr, "no device", 0.0});
  const std::string cuda_note = "not built (no CUDA toolkit at configure time)";
#endif
  const bool peer = !python.empty();
  const bool peer_gpu = peer && torch_sees_gpu(python);
  const std::string peer_note =
      !o.torch ? "not run (--no-torch)"
      : !peer  ? (o.python.empty()
                      ? std::string("not installed: `python3 -c 'import torch'` fails (Debian: "
                                     "apt-get install python3-torch, for /usr/bin/python3; or pip "
                                     "install torch)")
                      : "not installed: `" + o.python + " -c 'import torch'` fails (--python)")
               : (peer_gpu ? "PyTorch on the GPU" : "PyTorch on the CPU, its default threads") +
                    std::string(" (") + python + ")";

  const Dataset digits = load_mnist(o.data, std::nullopt, Split::train);
  const int q = o.quick ? 10 : 1;         // --quick divides the sizes
  const int q_chains = o.quick ? 16 : 1;  // and the chain counts, which stay powers of 2
  std::vector<Row> rows;
  std::vector<std::string> notes;

  // Runs `measure` on every build, catching what a build cannot do.
  const auto on_builds = [&](Row& row, const std::function<Measure(Backend&, bool)>& measure) {
    for (const Build& b : builds) {
      Measure& m = b.name == "cpu" ? row.cpu : row.cuda;
      if (!b.unavailable.empty()) {
        m.why_not = b.unavailable;
        continue;
      }
      try {
        std::unique_ptr<Backend> backend = b.make();
        m = measure(*backend, b.name == "cuda");
      } catch (const std::exception& e) {
        m.why_not = std::string("failed: ") + e.what();
      }
      std::printf("  %-28s %-5s %s\n", row.workload.c_str(), b.name.c_str(),
                  format_seconds_or_rate(row, m).c_str());
      std::fflush(stdout);
    }
  };
  const auto on_peer = [&](Row& row, const std::string& args, double units) {
    if (!peer) {
      row.torch.why_not = o.torch ? "not installed" : "not run";
      return;
    }
    std::string device;
    const std::optional<double> seconds = run_peer(o, python, args, &device);
    if (!seconds) {
      row.torch.why_not = "failed";
      return;
    }
    row.torch.ran = true;
    row.torch.seconds = *seconds;
    row.torch.units = units;
    row.torch_device = device;
    std::printf("  %-28s torch %s (%s)\n", row.workload.c_str(),
                format_seconds_or_rate(row, row.torch).c_str(), device.c_str());
    std::fflush(stdout);
  };

  // 1. The reference recipe.
  {
    const int64_t iters = 25000 / q;
    Row row{"1 reference recipe",
            std::to_string(iters) + " it CD-3, H 100, " + std::to_string(threes.rows) + " threes",
            "iterations", false, static_cast<double>(iters)};
    on_builds(row, [&](Backend& be, bool) { return time_recipe(be, threes, iters, o.repeats); });
    const int64_t peer_iters = peer_gpu ? iters : std::min<int64_t>(iters, 500);
    on_peer(row, "recipe --iters " + std::to_string(peer_iters), static_cast<double>(peer_iters));
    if (peer && peer_iters < iters) {
      notes.push_back("torch, reference recipe: " + std::to_string(peer_iters) +
                      " iterations timed, scaled to " + std::to_string(iters));
    }
    rows.push_back(row);
  }

  // The sampled models: N(0, 0.05^2) weights, visible biases from the digits' pixel frequencies.
  const auto sampler_params = [&](int hidden) {
    Recipe init;
    init.hidden = hidden;
    init.init_std = 0.05f;
    init.visible_bias = true;
    return init_params(init, digits);
  };
  // 2. The sampler. The CPU runs at most 2e5 / H x 100 chain-steps' worth of chains (about two
  // seconds each on the 2-core development machine), --quick too, but a tile of 256 chains (one
  // thread's work) for each of its threads at least: fewer leave cores idle (on the H200's 16-core
  // host, 2026-12-04, 512 chains at H 500 kept 2 of them busy); --quick's fewer steps keep it
  // short.
  const auto cpu_cap_for = [](int H) {
    return std::max<int64_t>(H <= 100 ? 2048 : 512, int64_t{256} * cpu_threads());
  };
  for (const int H : {100, 500}) {
    const Params params = sampler_params(H);
    const int64_t steps = 100 / (o.quick ? 5 : 1);
    const int64_t cpu_cap = cpu_cap_for(H);
    for (const int64_t N : {int64_t{1024}, int64_t{65536}, int64_t{262144}}) {
      const int64_t n = N / q_chains;
      Row row{"2 sampler H " + std::to_string(H) + " N " + std::to_string(n),
              "K " + std::to_string(steps) + " steps", "chain-steps", true,
              static_cast<double>(n) * static_cast<double>(steps)};
      on_builds(row, [&](Backend& be, bool cuda) {
        const int64_t chains = cuda ? n : std::min(n, cpu_cap);
        Measure m = time_sampler(be, params, chains, steps, o.repeats);
        if (chains < n) m.note = "cpu ran N " + std::to_string(chains) + "; " + m.note;
        return m;
      });
      if (!row.cpu.note.empty() && row.cpu.note.starts_with("cpu ran")) {
        row.size += " (cpu: N " + std::to_string(std::min(n, cpu_cap)) + ")";
      }
      const int64_t peer_chains = peer_gpu ? n : std::min(n, cpu_cap);
      const int64_t peer_steps = peer_gpu ? steps : 10;
      on_peer(row,
              "sample --chains " + std::to_string(peer_chains) + " --steps " +
                  std::to_string(peer_steps) + " --hidden " + std::to_string(H),
              static_cast<double>(peer_chains) * static_cast<double>(peer_steps));
      rows.push_back(row);
    }
  }
  // 2'. `sample`'s path end to end at H 100 for row 2's largest N (10 blocks on the GPU), so that
  // the two rows' ratio is what the blocks, pieces and transfers cost.
  {
    const Params params = sampler_params(100);
    const int64_t steps = 100 / (o.quick ? 5 : 1), n = 262144 / q_chains;
    const int64_t cpu_chains = std::min<int64_t>(n, cpu_cap_for(100));
    Row row{"2 sample cmd N " + std::to_string(n),
            "H 100, K " + std::to_string(steps) + ", end to end (cpu: N " +
                std::to_string(cpu_chains) + ")",
            "chain-steps", true, static_cast<double>(n) * static_cast<double>(steps)};
    on_builds(row, [&](Backend& be, bool cuda) {
      return time_sample_command(be, params, cuda ? n : cpu_chains, steps, o.repeats);
    });
    row.torch.why_not = "-";  // the peer's sampler is timed in the rows above
    notes.push_back(
        "sample cmd: the path of `sample` (host/gibbs_blocks.hpp), all of it timed: the "
        "chains in blocks of at most " +
        std::to_string(sample_block_chains(params.visible, params.hidden)) +
        ", each block's steps in pieces of about 0.05 s, the states moved in and out "
        "for each piece");
    rows.push_back(row);
  }
  notes.push_back(
      "sampler rates are steady-state chain-steps per second: (time of K steps - time of 1 step) "
      "/ (K - 1), so moving the states in and out is not counted (end-to-end times in the JSON); "
      "the CPU runs at most " +
      std::to_string(cpu_cap_for(100)) + " (H 100) or " + std::to_string(cpu_cap_for(500)) +
      " (H 500) chains (a tile of 256 for each of its " + std::to_string(cpu_threads()) +
      " threads at least)");
  if (peer && !peer_gpu) notes.push_back("torch, sampler: the CPU's N, 10 steps timed");

  // 3. One epoch of minibatch PCD-1 on the training digits.
  {
    Recipe recipe;
    recipe.hidden = 500;
    recipe.batch = 100;
    recipe.pcd = true;
    recipe.k = 1;
    recipe.lr = 0.01f;
    recipe.init_std = 0.01f;
    recipe.visible_bias = true;
    recipe.epochs = 1;
    Dataset data = digits;
    if (o.quick) {
      data.rows /= q;
      data.pixels.resize(static_cast<size_t>(data.rows) * data.cols());
      data.labels.resize(static_cast<size_t>(data.rows));
    }
    const int64_t updates = batches_per_epoch(recipe, data.rows);
    Row row{"3 PCD-1 epoch",
            std::to_string(data.rows) + " digits, H 500, B 100, " + std::to_string(updates) +
                " updates",
            "updates", false, static_cast<double>(updates)};
    on_builds(row, [&](Backend& be, bool) { return time_pcd(be, data, recipe, o.repeats); });
    const int64_t peer_updates = peer_gpu ? updates : std::min<int64_t>(updates, 40);
    on_peer(row, "pcd --hidden 500 --batch 100 --updates " + std::to_string(peer_updates),
            static_cast<double>(peer_updates));
    if (peer && peer_updates < updates) {
      notes.push_back("torch, PCD: " + std::to_string(peer_updates) + " updates timed, scaled to " +
                      std::to_string(updates));
    }
    rows.push_back(row);
  }

  // 4. AIS, H 500, 100 runs x 14500 temperatures; the CPU runs a tenth of the temperatures.
  {
    Recipe init;
    init.hidden = 500;
    init.init_std = 0.01f;
    init.visible_bias = true;
    const Params params = init_params(init, digits);
    const std::vector<float> base = base_rate_biases(digits);
    const int64_t temperatures = 14500 / q, runs = 100;
    Row row{"4 AIS", "H 500, 100 runs x " + std::to_string(temperatures) + " temperatures",
            "run-temperatures", false, static_cast<double>(temperatures * runs)};
    on_builds(row, [&](Backend& be, bool cuda) {
      const int64_t t = cuda ? temperatures : temperatures / 10;
      Measure m = time_ais(be, params, base, t, runs, cuda ? o.repeats : 1);
      if (!cuda) m.note = "cpu ran " + std::to_string(t) + " temperatures, once";
      return m;
    });
    row.torch.why_not = "-";
    notes.push_back("AIS: the CPU runs " + std::to_string(temperatures / 10) +
                    " temperatures once, its time scaled to " + std::to_string(temperatures) +
                    "; this is one AIS from one base: eval runs two (base-rate and uniform), "
                    "twice this; the peer has no AIS");
    rows.push_back(row);
  }

  double load_end = 0.0;
  (void)getloadavg(&load_end, 1);
  cpu_peak = std::max(cpu_peak, bench::measure_machine_fma_peak(cores) * 1e9);

  // OpenBLAS 0.3.21 (Debian 12) chose its generic SSE3 kernels on the H200's host (2026-12-04),
  // a CPU it does not know, and the sampler's and PCD's CPU rates were measured so; main now runs
  // itself again with better ones (host/openblas_kernels.hpp), so this note says the exec failed.
  if (!openblas_kernels_to_choose(openblas_get_corename()).empty()) {
    notes.push_back(
        "OpenBLAS did not recognize this CPU and runs its generic SSE3 (Prescott) kernels on it, "
        "which has " +
        std::string(cpu::simd_name(cpu::simd())) +
        ": the CPU rows that use OpenBLAS (the sampler, sample cmd, PCD) are slower than they need "
        "be; OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) in the environment chooses its "
        "faster kernels");
  }

  // The table.
  std::printf(
      "\nbench_all, %s UTC. cpu: %d cores, fp32 FMA peak (%s) %.1f GFLOP/s measured on all "
      "cores at once (load average %.2f before it started, %.2f at the end with its own work%s), "
      "the project's kernels in %s, OpenBLAS's %s kernels; cuda: %s%s%s; peer: %s. Medians of %d "
      "runs.\n\n",
      utc_stamp("%Y-%m-%d %H:%M").c_str(), cores, bench::fma_peak_isa(), cpu_peak / 1e9, load,
      load_end,
      load > 0.5 * cores  // the end's load average counts the benchmark's own threads
          ? ": a busy machine, so the peak and the CPU rates are both lowered"
          : "",
      cpu::simd_name(cpu::simd()), openblas_get_corename(), cuda_note.c_str(),
      gpu_peak_text.empty() ? "" : ", fp32 peak ", gpu_peak_text.c_str(), peer_note.c_str(),
      o.repeats);
  std::printf("%-24s %-42s %11s %11s %8s %8s %8s %11s %9s\n", "workload", "size", "cpu", "cuda",
              "speedup", "cpu %pk", "cuda %pk", "torch", "vs torch");
  for (const Row& row : rows) {
    const Measure& best = row.cuda.ran ? row.cuda : row.cpu;
    std::printf("%-24s %-42s %11s %11s %8s %8s %8s %11s %9s\n", row.workload.c_str(),
                row.size.c_str(), format_seconds_or_rate(row, row.cpu).c_str(),
                format_seconds_or_rate(row, row.cuda).c_str(),
                ratio(speedup(row, row.cuda, row.cpu)).c_str(), percent(row.cpu, cpu_peak).c_str(),
                percent(row.cuda, builds[1].peak_flops).c_str(),
                format_seconds_or_rate(row, row.torch).c_str(),
                ratio(speedup(row, best, row.torch)).c_str());
  }
  std::printf("\n");
  for (const Row& row : rows) {
    if (percent(row.cpu, cpu_peak).ends_with("!") ||
        percent(row.cuda, builds[1].peak_flops).ends_with("!")) {
      notes.push_back(
          "%pk above 100% (marked !): the peak, measured while the machine was busy, came out "
          "lower than the work's own rate; rerun on a quiet machine to compare with it");
      break;
    }
  }
  for (const std::string& note : notes) std::printf("- %s\n", note.c_str());
  std::printf(
      "- speedup: cuda over cpu; vs torch: our faster build over the peer; %%pk: achieved "
      "FLOP/s (dense count) over the build's fp32 FMA peak\n");

  // The JSON.
  struct utsname host {};
  uname(&host);
  nlohmann::json out = {{"program", "bench_all"},
                        {"version", version()},
                        {"git_commit", git_commit()},
                        {"utc", utc_stamp("%Y-%m-%dT%H:%M:%SZ")},
                        {"host", host.nodename},
                        {"cpu_cores", cores},
                        {"load_average", {load, load_end}},
                        {"cpu_peak_flops", cpu_peak},
                        {"cpu_peak_isa", bench::fma_peak_isa()},
                        {"cpu_simd", cpu::simd_name(cpu::simd())},  // the project's kernels'
                        {"openblas_core", openblas_get_corename()},
                        {"cuda", cuda_note},
                        {"cuda_peak_flops", builds[1].peak_flops},
                        {"peer", peer_note},
                        {"repeats", o.repeats},
                        {"quick", o.quick},
                        {"notes", notes}};
  for (const Row& row : rows) {
    out["rows"].push_back(
        {{"workload", row.workload},
         {"size", row.size},
         {"unit", row.unit},
         {"cpu", measure_json(row, row.cpu, cpu_peak)},
         {"cuda", measure_json(row, row.cuda, builds[1].peak_flops)},
         {"torch", measure_json(row, row.torch, 0.0)},
         {"torch_device", row.torch_device},
         {"speedup_cuda_over_cpu", row.cuda.ran && row.cpu.ran
                                       ? nlohmann::json(speedup(row, row.cuda, row.cpu))
                                       : nlohmann::json(nullptr)}});
  }
  // Written whole or not at all (a full disk had left an empty file and "wrote"), under a name of
  // its own: a run finishing in the same second as another takes -2, -3, ... after the time (a
  // name is taken only where no file has it, so two runs at once cannot overwrite each other).
  const std::string stem =
      o.results + "/bench_all-" + utc_stamp("%Y%m%d-%H%M%S") + (o.quick ? "-quick" : "");
  const std::string json = out.dump(2) + "\n";
  std::string path = stem + ".json";
  try {
    for (int n = 2; !StagedFile(path, json).commit_unless_taken(); ++n)
      path = stem + "-" + std::to_string(n) + ".json";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_all: the results were measured but not written: %s\n", e.what());
    return 2;
  }
  std::printf("\nwrote %s\n", path.c_str());
  return 0;
}

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  // The CPU build as rbm_cpu runs: OpenBLAS's AVX2 or AVX-512 kernels where it did not know the
  // CPU.
  rbm::rerun_with_openblas_kernels(argv);
  rbm::Options o;
  return rbm::bench::bench_main(
      argc, argv,
      {{"--data", [&](const std::string& v) { o.data = v; }},
       {"--results", [&](const std::string& v) { o.results = v; }},
       {"--peer", [&](const std::string& v) { o.peer = v; }},
       {"--python", [&](const std::string& v) { o.python = v; }},
       rbm::bench::int_flag("--repeats", o.repeats, 1, 1000),
       rbm::bench::switch_flag("--no-torch", [&] { o.torch = false; }),
       rbm::bench::switch_flag("--quick", [&] { o.quick = true; })},
      "bench_all [--data DIR] [--results DIR] [--peer PATH] [--python PATH] [--repeats R] "
      "[--no-torch] [--quick]\nRun from the repository root (the peer's default path is "
      "relative).",
      [&] { return rbm::run(o); });
}
