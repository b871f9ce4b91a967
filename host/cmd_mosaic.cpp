// The `mosaic` command: draws a model's weights as the training run's weights.png draws them, for
// any model directory: a checkpoint read while its run trains on, or a W edited by hand.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/model.hpp"
#include "host/model_io.hpp"
#include "host/png_image.hpp"

namespace rbm {

int run_mosaic_command(const std::string& program, const std::vector<std::string>& args) {
  CLI::App app{
      "draw a model's weights as a mosaic (as a run's weights.png): tile j is hidden "
      "unit j's 28x28 weights, one grey scale from min to max of W",
      program + " mosaic"};
  std::string model, out;
  app.add_option("--model,model", model,
                 "run directory holding W.npy, b.npy [, a.npy, run.json]; a running training's "
                 "directory gives its last checkpoint")
      ->required()
      ->type_name("DIR");
  app.add_option("--out", out, "the PNG to write")->required()->type_name("FILE");
  if (const auto exit_code = parse_command_flags(app, args)) return *exit_code;

  check_output_file("--out", out);
  check_output_extension("--out", out, ".png");
  const Params params = read_model(model);
  if (params.visible != kImagePixels) {
    throw InputError("--model " + model + " has " + std::to_string(params.visible) +
                     " visible units: the mosaic draws 28x28 images (784)");
  }
  const GrayImage mosaic = weight_mosaic(params);
  write_png_gray(out, mosaic.width, mosaic.height, mosaic.pixels);
  std::printf("drew the weights of a %s model (H %d) in %d columns; wrote %s\n",
              hidden_type_name(params.hidden_type), params.hidden,
              (mosaic.width + 1) / (kImageSide + 1), out.c_str());
  return 0;
}

}  // namespace rbm
