// Model directories (see model_io.hpp).
#include "host/model_io.hpp"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/errors.hpp"
#include "host/npy.hpp"

namespace rbm {
namespace {

// DIR/run.json, parsed; nullopt when there is none (a model written by hand). InputError when it
// is not JSON.
std::optional<nlohmann::json> read_run_json(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "run.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception&) {
    throw InputError(path.string() + ": not valid JSON");
  }
}

// recipe.hidden_type of a run.json (host/checkpoint.hpp writes it); binary when the file or the
// key is absent (models written before ternary units existed, or by hand).
HiddenType recorded_hidden_type(const std::filesystem::path& dir,
                                const std::optional<nlohmann::json>& run) {
  if (!run || !run->is_object() || !run->contains("recipe") || !(*run)["recipe"].is_object() ||
      !(*run)["recipe"].contains("hidden_type")) {
    return HiddenType::binary;
  }
  const nlohmann::json& type = (*run)["recipe"]["hidden_type"];
  if (type == "binary") return HiddenType::binary;
  if (type == "ternary") return HiddenType::ternary;
  throw InputError((dir / "run.json").string() + ": recipe.hidden_type " + type.dump() +
                   " is not \"binary\" or \"ternary\"");
}

}  // namespace

void write_model(const std::filesystem::path& dir, const Params& params) {
  write_npy(dir / "W.npy", params.W, {params.visible, params.hidden});
  write_npy(dir / "b.npy", params.b, {params.hidden});
  if (params.has_visible_bias()) write_npy(dir / "a.npy", params.a, {params.visible});
}

Params read_model(const std::filesystem::path& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    throw InputError("--model " + dir.string() + ": " +
                     (error ? "cannot be examined: " + error.message() : "not a directory"));
  }
  // run.json, parsed once for both of its uses here. A run's record with a checkpoint entry
  // (host/checkpoint.hpp) makes this a run directory: the checkpoint it commits to, each file
  // checked against its SHA-256 (NAME or NAME.next, whichever matches: a run may be writing it;
  // read again when it committed newer ones meanwhile), a.npy only when the checkpoint has it.
  // Otherwise it gives only the hidden type; models written by hand have no run.json.
  const std::optional<nlohmann::json> run = read_run_json(dir);
  if (run && run->is_object() && run->contains("checkpoint")) {
    try {
      return load_newest_checkpoint(dir).params;
    } catch (const InputError& e) {
      throw InputError("--model " + dir.string() + ": " + e.what());
    }
  }
  const NpyArray W = read_npy(dir / "W.npy");
  if (W.shape.size() != 2) throw InputError((dir / "W.npy").string() + ": must be 2-D (d, H)");
  const int64_t d = W.shape[0], H = W.shape[1];
  // b (H,) and a (d,), 1-D as the trainer writes them; a length that fits the other side of W
  // is most likely W saved transposed, (H, d).
  const auto read_vector = [&](const char* name, int64_t length, const char* what) {
    const std::filesystem::path path = dir / name;
    const NpyArray v = read_npy(path);
    const std::string shape_text = "W.npy is (" + std::to_string(d) + ", " + std::to_string(H) +
                                   "), (d, H): " + name + " must be (" + std::to_string(length) +
                                   ",), one " + what;
    if (v.shape.size() != 1 || v.shape[0] != length) {
      const bool transposed = v.shape.size() == 1 && v.shape[0] == (length == H ? d : H);
      throw InputError(path.string() + ": shape (" +
                       (v.shape.empty() ? std::string() : std::to_string(v.shape[0])) +
                       (v.shape.size() > 1 ? ", ..." : ",") + "); " + shape_text +
                       (transposed ? " (was W saved transposed?)" : ""));
    }
    return v.data;
  };
  Params params;
  params.visible = static_cast<int>(d);
  params.hidden = static_cast<int>(H);
  params.W = W.data;
  params.b = read_vector("b.npy", H, "per hidden unit");
  if (std::filesystem::exists(dir / "a.npy")) {
    params.a = read_vector("a.npy", d, "per visible unit");
  }
  check_shapes(params);
  params.hidden_type = recorded_hidden_type(dir, run);
  return params;
}

}  // namespace rbm
