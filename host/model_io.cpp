// Model directories (see model_io.hpp).
#include "host/model_io.hpp"

#include "host/errors.hpp"
#include "host/npy.hpp"

namespace rbm {

void write_model(const std::filesystem::path& dir, const Params& params) {
  write_npy(dir / "W.npy", params.W, {params.visible, params.hidden});
  write_npy(dir / "b.npy", params.b, {params.hidden});
  if (params.has_visible_bias()) write_npy(dir / "a.npy", params.a, {params.visible});
}

Params read_model(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) {
    throw InputError("--model " + dir.string() + ": not a directory");
  }
  const NpyArray W = read_npy(dir / "W.npy");
  if (W.shape.size() != 2) throw InputError((dir / "W.npy").string() + ": must be 2-D (d, H)");
  const NpyArray b = read_npy(dir / "b.npy");
  Params params;
  params.visible = static_cast<int>(W.shape[0]);
  params.hidden = static_cast<int>(W.shape[1]);
  params.W = W.data;
  params.b = b.data;
  if (std::filesystem::exists(dir / "a.npy")) params.a = read_npy(dir / "a.npy").data;
  check_shapes(params);
  return params;
}

}  // namespace rbm
