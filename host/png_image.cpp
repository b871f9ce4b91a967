// PNG through libpng's simplified API (png_image_*), which reports errors in image.message rather
// than by longjmp, so no C++ object is ever jumped over; and the two mosaics on one layout.
#include "host/png_image.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "host/atomic_file.hpp"
#include "host/errors.hpp"

namespace rbm {
namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw InputError(path.string() + ": " + what);
}

// Lays out n tiles of tile_w x tile_h as described in png_image.hpp; pixel_of(t, i) is pixel i
// (row-major within the tile) of tile t; the lines between tiles and the unused cells are
// `separator`. columns = 0: ceil(sqrt(n)). After every `group` columns the line is `group_gap`
// pixels wide instead of 1 (before_after_grid's pairs).
template <class PixelOf>
GrayImage tile_mosaic(int n, int tile_w, int tile_h, uint8_t separator, PixelOf pixel_of,
                      int columns = 0, int group = 1, int group_gap = 1) {
  if (columns <= 0) {
    while (columns * columns < n) ++columns;
  }
  const int rows = columns == 0 ? 0 : (n + columns - 1) / columns;
  const auto column_x = [&](int c) { return c * (tile_w + 1) + (c / group) * (group_gap - 1); };
  GrayImage image;
  image.width = columns == 0 ? 0 : column_x(columns - 1) + tile_w;
  image.height = std::max(0, rows * (tile_h + 1) - 1);
  image.pixels.assign(static_cast<size_t>(image.width) * image.height, separator);
  for (int t = 0; t < n; ++t) {
    const int x0 = column_x(t % columns), y0 = (t / columns) * (tile_h + 1);
    for (int y = 0; y < tile_h; ++y) {
      for (int x = 0; x < tile_w; ++x) {
        image.pixels[static_cast<size_t>(y0 + y) * image.width + x0 + x] =
            pixel_of(t, y * tile_w + x);
      }
    }
  }
  return image;
}

}  // namespace

StagedFile stage_png_gray(const std::filesystem::path& path, int width, int height,
                          const std::vector<uint8_t>& pixels) {
  if (width <= 0 || height <= 0 || pixels.size() != static_cast<size_t>(width) * height) {
    fail(path, "cannot write a " + std::to_string(width) + "x" + std::to_string(height) +
                   " PNG from " + std::to_string(pixels.size()) + " pixels");
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_GRAY;
  // First call sizes the PNG, second writes it.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels.data(), width, nullptr)) {
    fail(path, std::string("libpng: ") + image.message);
  }
  std::string png(size, '\0');
  if (!png_image_write_to_memory(&image, png.data(), &size, 0, pixels.data(), width, nullptr)) {
    fail(path, std::string("libpng: ") + image.message);
  }
  png.resize(size);
  return StagedFile(path, png);
}

void write_png_gray(const std::filesystem::path& path, int width, int height,
                    const std::vector<uint8_t>& pixels) {
  stage_png_gray(path, width, height, pixels).commit();
}

StagedFile stage_png_gray(const std::filesystem::path& path, const GrayImage& image) {
  return stage_png_gray(path, image.width, image.height, image.pixels);
}

GrayImage read_png_gray(const std::filesystem::path& path) {
  const std::string file = read_file(path);
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, file.data(), file.size())) {
    fail(path, std::string("not a readable PNG: ") + image.message);
  }
  image.format = PNG_FORMAT_GRAY;
  GrayImage gray;
  gray.width = static_cast<int>(image.width);
  gray.height = static_cast<int>(image.height);
  gray.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, gray.pixels.data(), 0, nullptr)) {
    fail(path, std::string("not a readable PNG: ") + image.message);
  }
  return gray;
}

GrayImage weight_mosaic(const Params& params, int tile_w, int tile_h) {
  const int hidden = params.hidden;
  const size_t visible = static_cast<size_t>(tile_w) * tile_h;
  if (params.visible != static_cast<int>(visible) ||
      params.W.size() != visible * static_cast<size_t>(hidden)) {
    throw InputError("weight_mosaic: W holds " + std::to_string(params.W.size()) +
                     " values for visible " + std::to_string(params.visible) + ", hidden " +
                     std::to_string(hidden) + " and " + std::to_string(tile_w) + "x" +
                     std::to_string(tile_h) + " tiles");
  }
  if (!all_finite(params.W)) {
    throw InputError("weight_mosaic: W holds a non-finite value");
  }
  const auto [lo, hi] = std::minmax_element(params.W.begin(), params.W.end());
  const double min = params.W.empty() ? 0.0 : *lo;
  const double range = params.W.empty() ? 0.0 : *hi - min;
  return tile_mosaic(hidden, tile_w, tile_h, kWeightMosaicSeparator, [&](int j, int i) -> uint8_t {
    if (range == 0) return 128;
    const double w = params.W[static_cast<size_t>(i) * hidden + j];
    return static_cast<uint8_t>(std::lround((w - min) / range * 255.0));
  });
}

GrayImage image_grid(const std::vector<uint8_t>& states, int n, int max_images, int tile_w,
                     int tile_h) {
  const size_t cols = static_cast<size_t>(tile_w) * tile_h;
  if (n < 0 || states.size() != static_cast<size_t>(n) * cols) {
    throw InputError("image_grid: " + std::to_string(states.size()) + " states are not " +
                     std::to_string(n) + " images of " + std::to_string(tile_w) + "x" +
                     std::to_string(tile_h));
  }
  return tile_mosaic(
      std::min(n, max_images), tile_w, tile_h, kImageGridSeparator,
      [&](int t, int i) -> uint8_t { return states[static_cast<size_t>(t) * cols + i] ? 255 : 0; });
}

GrayImage before_after_grid(const std::vector<uint8_t>& before, const std::vector<uint8_t>& after,
                            int n, int max_pairs, int tile_w, int tile_h) {
  const size_t cols = static_cast<size_t>(tile_w) * tile_h;
  if (n < 0 || before.size() != static_cast<size_t>(n) * cols || after.size() != before.size()) {
    throw InputError("before_after_grid: " + std::to_string(before.size()) + " and " +
                     std::to_string(after.size()) + " states are not " + std::to_string(n) +
                     " images of " + std::to_string(tile_w) + "x" + std::to_string(tile_h));
  }
  const int pairs = std::min(n, max_pairs);
  int pair_columns = 0;
  while (pair_columns * pair_columns < pairs) ++pair_columns;
  return tile_mosaic(
      2 * pairs, tile_w, tile_h, kImageGridSeparator,
      [&](int t, int i) -> uint8_t {
        const std::vector<uint8_t>& side = t % 2 == 0 ? before : after;
        return side[static_cast<size_t>(t / 2) * cols + i] ? 255 : 0;
      },
      2 * pair_columns, /*group=*/2, kPairGap);
}

}  // namespace rbm
