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
// is not JSON, or not shaped as a run's record: an object, whose recipe, data and checkpoint are
// objects where present. (Read as "records nothing", `[]` or {"recipe": 5} would score a ternary
// model as binary without a word.)
std::optional<nlohmann::json> read_run_json(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "run.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  nlohmann::json run;
  try {
    run = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception&) {
    throw InputError(path.string() + ": not valid JSON");
  }
  const auto shown = [](const nlohmann::json& value) {
    std::string text = value.dump();
    if (text.size() <= 40) return text;
    size_t cut = 37;  // not inside a UTF-8 character: back to its first byte
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    return text.substr(0, cut) + "...";
  };
  if (!run.is_object()) {
    throw InputError(path.string() + ": " + shown(run) +
                     " is not a run's record, which is a JSON object");
  }
  for (const char* key : {"recipe", "data", "checkpoint"}) {
    if (run.contains(key) && !run[key].is_object()) {
      throw InputError(path.string() + ": " + key + " is " + shown(run[key]) +
                       ", where a run's record has an object");
    }
  }
  return run;
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

// W.npy, b.npy [, a.npy] of a model directory as they are, checked: shapes that fit, at least one
// visible and one hidden unit, finite values.
Params read_bare_model(const std::filesystem::path& dir) {
  const NpyArray W = read_npy(dir / "W.npy");
  if (W.shape.size() != 2) throw InputError((dir / "W.npy").string() + ": must be 2-D (d, H)");
  const int64_t d = W.shape[0], H = W.shape[1];
  if (d < 1 || H < 1) {
    throw InputError((dir / "W.npy").string() + ": shape " + npy_shape_text(W.shape) +
                     ": (d, H) needs at least one visible and one hidden unit");
  }
  // b (H,) and a (d,), 1-D as the trainer writes them; a length that fits the other side of W
  // is most likely W saved transposed, (H, d).
  const auto read_vector = [&](const char* name, int64_t length, const char* what) {
    const std::filesystem::path path = dir / name;
    const NpyArray v = read_npy(path);
    const std::string shape_text = "W.npy is " + npy_shape_text(W.shape) + ", (d, H): " + name +
                                   " must be " + npy_shape_text({length}) + ", one " + what;
    if (v.shape.size() != 1 || v.shape[0] != length) {
      const bool transposed = v.shape.size() == 1 && v.shape[0] == (length == H ? d : H);
      throw InputError(path.string() + ": shape " + npy_shape_text(v.shape) + "; " + shape_text +
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
  if (const std::optional<NonFiniteValue> bad = first_non_finite(params)) {
    throw InputError((dir / bad->file).string() + ": " + bad->where +
                     ": a model's parameters must be finite");
  }
  return params;
}

// run.json's recipe, where it records one, describes the model: recipe.hidden is W.npy's H (a
// W.npy of another run put in its place, its SHA-256 recorded anew, is not the model that run.json
// describes) and recipe.visible_bias says whether there is an a.npy (a hand-made directory that
// left a.npy out, or copied one in, would be scored as another model without a word). --resume
// refuses both alike (host/checkpoint.cpp).
// `from_checkpoint`: the parameters are the checkpoint's (a.npy is there when it names one).
void check_recorded_recipe(const std::filesystem::path& dir,
                           const std::optional<nlohmann::json>& run, const Params& params,
                           bool from_checkpoint) {
  if (!run || !run->is_object() || !run->contains("recipe") || !(*run)["recipe"].is_object()) {
    return;
  }
  const nlohmann::json& recipe = (*run)["recipe"];
  const std::string where = "--model " + dir.string() + ": " + (dir / "run.json").string();
  if (recipe.contains("hidden")) {
    const nlohmann::json& recorded = recipe["hidden"];
    const std::optional<int64_t> value = json_int64(recorded);  // as --resume reads it
    if (!value) {
      throw InputError(where + ": recipe.hidden has the wrong type: " + recorded.dump() +
                       " (the number of hidden units, an integer)");
    }
    if (*value != params.hidden) {
      throw InputError(where + " records recipe.hidden " + recorded.dump() +
                       ", but W.npy has H = " + std::to_string(params.hidden) +
                       " hidden units: not the model of that run");
    }
  }
  if (recipe.contains("visible_bias")) {
    const nlohmann::json& recorded = recipe["visible_bias"];
    if (!recorded.is_boolean()) {
      throw InputError(where + ": recipe.visible_bias has the wrong type: " + recorded.dump() +
                       " (whether the model has visible biases, true or false)");
    }
    if (recorded.get<bool>() != params.has_visible_bias()) {
      const std::string holder = from_checkpoint ? "its checkpoint" : dir.string();
      throw InputError(where + " records recipe.visible_bias " + recorded.dump() + ", but " +
                       holder + (params.has_visible_bias() ? " has" : " has no") +
                       " a.npy (visible biases): not the model of that run");
    }
  }
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
  // run.json, parsed once for all of its uses here. A run's record with a checkpoint entry
  // (host/checkpoint.hpp) makes this a run directory: the checkpoint it commits to, each file
  // checked against its SHA-256 (NAME or NAME.next, whichever matches: a run may be writing it;
  // read again when it committed newer ones meanwhile), a.npy only when the checkpoint has it.
  // Otherwise it gives only the hidden type; models written by hand have no run.json.
  const std::optional<nlohmann::json> run = read_run_json(dir);
  Params params;
  const bool from_checkpoint = run && run->is_object() && run->contains("checkpoint");
  if (from_checkpoint) {
    try {
      params = load_newest_checkpoint(dir).params;
    } catch (const ChecksumMismatch& e) {
      // An edited file: its record no longer describes it, but the files may still be wanted.
      const nlohmann::json& sums = (*run)["checkpoint"].value("sha256", nlohmann::json::object());
      const bool has_a = sums.is_object() && sums.contains("a.npy");
      // A bare model's hidden units are binary unless a run.json says otherwise: a ternary
      // model's new directory needs one that says so, and nothing else.
      // (Not recorded_hidden_type, which throws on a bad type and would hide this message.)
      const bool ternary = run->contains("recipe") && (*run)["recipe"].is_object() &&
                           (*run)["recipe"].value("hidden_type", nlohmann::json()) == "ternary";
      throw InputError(
          "--model " + dir.string() + ": " + e.what() +
          "; to use the files as they are, copy W.npy" +
          (has_a ? ", b.npy and a.npy" : " and b.npy") + " to a new directory" +
          (ternary
               ? " with a run.json of only {\"recipe\": {\"hidden_type\": \"ternary\"}}, a bare "
                 "ternary model"
               : " without run.json, a bare model"));
    } catch (const InputError& e) {
      throw InputError("--model " + dir.string() + ": " + e.what());
    }
  } else {
    params = read_bare_model(dir);
    params.hidden_type = recorded_hidden_type(dir, run);
  }
  check_recorded_recipe(dir, run, params, from_checkpoint);
  return params;
}

}  // namespace rbm
