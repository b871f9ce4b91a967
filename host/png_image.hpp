// Greyscale PNG files (libpng), and the mosaics drawn into them: the weight images of the hidden
// units, and grids of sampled binary images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/model.hpp"

namespace rbm {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width), row-major
};

// Writes an 8-bit greyscale PNG atomically (host/atomic_file.hpp), or stages it, to be committed
// with other outputs. Throws InputError.
void write_png_gray(const std::filesystem::path& path, int width, int height,
                    const std::vector<uint8_t>& pixels);
StagedFile stage_png_gray(const std::filesystem::path& path, int width, int height,
                          const std::vector<uint8_t>& pixels);
StagedFile stage_png_gray(const std::filesystem::path& path, const GrayImage& image);

// Reads any PNG as 8-bit greyscale. Throws InputError naming the file and libpng's message.
GrayImage read_png_gray(const std::filesystem::path& path);

// Mosaic layout, shared by the mosaics below: n tiles in ceil(sqrt(n)) columns and
// ceil(n / columns) rows, tile t at row t / columns, column t % columns (row-major), separated by
// 1-pixel lines; no outer border, so the image is columns * (tile_w + 1) - 1 pixels wide. Unused
// cells are separator-coloured. The lines are black in the weight mosaic (its tiles are mostly
// mid-grey: the weights near 0) and mid-grey between the black and white images of the grids.
inline constexpr uint8_t kWeightMosaicSeparator = 0;
// The tiles are MNIST's images unless told otherwise: 28x28, 784 visible units.
inline constexpr int kImageSide = 28;
inline constexpr int kImagePixels = kImageSide * kImageSide;
inline constexpr uint8_t kImageGridSeparator = 128;

// Tile j is hidden unit j's weights, column j of W: pixel i of tile j is W[i * H + j], i over the
// tile row-major. One grey scale for the whole mosaic: min(W) -> 0, max(W) -> 255 (constant W ->
// 128). Throws InputError when W is not (tile_w * tile_h, hidden) or holds a non-finite value.
GrayImage weight_mosaic(const Params& params, int tile_w = kImageSide, int tile_h = kImageSide);

// The first min(n, max_images) images of `states` ((n, tile_w * tile_h), each 0 or 1), 1 -> 255.
GrayImage image_grid(const std::vector<uint8_t>& states, int n, int max_images = 100,
                     int tile_w = kImageSide, int tile_h = kImageSide);

// The before/after picture: pairs (before image t, after image t) side by side for the first
// min(n, max_pairs) images of before and after (each (n, tile_w * tile_h), 0 or 1), in
// 2 ceil(sqrt(pairs)) columns (before in the even columns, after in the odd ones), row-major. The
// pairs stand kPairGap pixels apart (the line within a pair is 1 pixel), so that each pair reads
// as one.
inline constexpr int kPairGap = 5;
GrayImage before_after_grid(const std::vector<uint8_t>& before, const std::vector<uint8_t>& after,
                            int n, int max_pairs = 50, int tile_w = kImageSide,
                            int tile_h = kImageSide);

}  // namespace rbm
