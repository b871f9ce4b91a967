// PNG round trips and the mosaic layout: tile counts, one grey scale, where tile j's pixel i lands.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/png_image.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

using test::TempDir;

// Params of hidden units with (tile_w * tile_h) visible units, W all zero.
Params zero_params(int hidden, int tile_w = 28, int tile_h = 28) {
  Params params;
  params.visible = tile_w * tile_h;
  params.hidden = hidden;
  params.W.assign(static_cast<size_t>(params.visible) * hidden, 0.0f);
  params.b.assign(hidden, 0.0f);
  return params;
}

uint8_t at(const GrayImage& image, int x, int y) {
  return image.pixels[static_cast<size_t>(y) * image.width + x];
}

TEST(Png, RoundTrips) {
  TempDir dir;
  const int width = 7, height = 3;
  std::vector<uint8_t> pixels(width * height);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 12);
  write_png_gray(dir / "g.png", width, height, pixels);
  EXPECT_EQ(read_file(dir / "g.png").substr(0, 8), "\x89PNG\r\n\x1a\n");
  const GrayImage image = read_png_gray(dir / "g.png");
  EXPECT_EQ(image.width, width);
  EXPECT_EQ(image.height, height);
  EXPECT_EQ(image.pixels, pixels);
}

TEST(Png, RejectsBadInput) {
  TempDir dir;
  EXPECT_INPUT_ERROR(write_png_gray(dir / "g.png", 4, 4, std::vector<uint8_t>(15)), "g.png", "4x4");
  test::write_bytes(dir / "fake.png", "not a png at all");
  EXPECT_INPUT_ERROR(read_png_gray(dir / "fake.png"), "fake.png", "not a readable PNG");
}

TEST(Mosaic, HundredUnitsMakeTenByTenTiles) {
  const GrayImage mosaic = weight_mosaic(zero_params(100));
  EXPECT_EQ(mosaic.width, 10 * 28 + 9);
  EXPECT_EQ(mosaic.height, 10 * 28 + 9);
  EXPECT_EQ(mosaic.pixels.size(), size_t{289} * 289);
}

TEST(Mosaic, TwelveUnitsMakeFourColumnsOfThreeRows) {
  const GrayImage mosaic = weight_mosaic(zero_params(12));
  EXPECT_EQ(mosaic.width, 4 * 28 + 3);
  EXPECT_EQ(mosaic.height, 3 * 28 + 2);
}

TEST(Mosaic, OneGreyScaleFromMinToMax) {
  Params params = zero_params(4);
  params.W[0] = -0.5f;  // pixel 0 of tile 0
  params.W[1] = 1.5f;   // pixel 0 of tile 1
  const GrayImage mosaic = weight_mosaic(params);
  EXPECT_EQ(at(mosaic, 0, 0), 0);
  EXPECT_EQ(at(mosaic, 29, 0), 255);
  EXPECT_EQ(at(mosaic, 1, 0), 64);  // 0 is a quarter of the way from -0.5 to 1.5: 63.75
  EXPECT_EQ(at(mosaic, 28, 0), kWeightMosaicSeparator);

  const GrayImage constant = weight_mosaic(zero_params(4));
  EXPECT_EQ(at(constant, 0, 0), 128);
  EXPECT_EQ(at(constant, 56, 56), 128);  // the last pixel of tile 3
  // The lines between tiles stay visible where the tiles are mid-grey (weights near 0 in a W
  // spread about 0, or a constant W).
  EXPECT_EQ(at(constant, 28, 0), kWeightMosaicSeparator);
  EXPECT_GE(std::abs(int{kWeightMosaicSeparator} - 128), 64);
}

TEST(Mosaic, TileJPixelIIsColumnJOfW) {
  // H = 12: 4 columns, so tile 6 sits in row 1, column 2. Pixel i = (y 5, x 7) of it is W[i, 6].
  const int hidden = 12, j = 6, y = 5, x = 7, i = y * 28 + x;
  Params params = zero_params(hidden);
  params.W[static_cast<size_t>(i) * hidden + j] = 1.0f;
  params.W[static_cast<size_t>(i) * hidden + j + 1] = -1.0f;  // the same pixel of tile 7
  const GrayImage mosaic = weight_mosaic(params);
  EXPECT_EQ(at(mosaic, 2 * 29 + x, 1 * 29 + y), 255);
  EXPECT_EQ(at(mosaic, 3 * 29 + x, 1 * 29 + y), 0);
  int bright = 0;
  for (const uint8_t p : mosaic.pixels) bright += p == 255;
  EXPECT_EQ(bright, 1);
}

TEST(Mosaic, RejectsWeightsOfTheWrongShapeOrNotFinite) {
  Params params = zero_params(3);
  params.W.pop_back();
  EXPECT_INPUT_ERROR(weight_mosaic(params), "weight_mosaic");
  params = zero_params(3);
  params.W[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_INPUT_ERROR(weight_mosaic(params), "non-finite");
}

TEST(ImageGrid, DrawsBinaryImagesOnTheSameLayout) {
  const int n = 5;
  std::vector<uint8_t> states(n * 784, 0);
  states[4 * 784 + 3] = 1;  // image 4, pixel (y 0, x 3): row 1, column 1 of a 3-column grid
  const GrayImage grid = image_grid(states, n);
  EXPECT_EQ(grid.width, 3 * 29 - 1);
  EXPECT_EQ(grid.height, 2 * 29 - 1);
  EXPECT_EQ(at(grid, 29 + 3, 29), 255);
  EXPECT_EQ(at(grid, 29 + 4, 29), 0);
  EXPECT_EQ(at(grid, 2 * 29 + 1, 29 + 1), kImageGridSeparator);  // the empty sixth cell
}

// Pairs read as pairs: 1 pixel between a start image and its sample, kPairGap between pairs.
TEST(BeforeAfterGrid, SetsEachPairApart) {
  const int n = 3, d = 784;  // 3 pairs: 2 pair columns, 2 rows
  std::vector<uint8_t> before(n * d, 0), after(n * d, 0);
  before[1 * d] = 1;  // pair 1's start image, pixel (0, 0)
  after[2 * d] = 1;   // pair 2's sample, pixel (0, 0)
  const GrayImage grid = before_after_grid(before, after, n);
  const int pair_x = 2 * 29 - 1 + kPairGap;  // the second pair column's first pixel
  EXPECT_EQ(grid.width, pair_x + 2 * 29 - 1);
  EXPECT_EQ(grid.height, 2 * 29 - 1);
  EXPECT_EQ(at(grid, pair_x, 0), 255);  // pair 1, before
  EXPECT_EQ(at(grid, 29, 29), 255);     // pair 2 (row 1, pair column 0), after
  for (int x = 2 * 29 - 1; x < pair_x; ++x) EXPECT_EQ(at(grid, x, 0), kImageGridSeparator) << x;
  EXPECT_EQ(at(grid, 28, 0), kImageGridSeparator);            // within pair 0
  EXPECT_EQ(at(grid, pair_x + 29, 29), kImageGridSeparator);  // the unused fourth pair
}

TEST(ImageGrid, ShowsAtMostMaxImages) {
  const GrayImage grid = image_grid(std::vector<uint8_t>(150 * 784, 1), 150);
  EXPECT_EQ(grid.width, 289);
  EXPECT_EQ(grid.height, 289);
  EXPECT_EQ(image_grid(std::vector<uint8_t>(5 * 784, 1), 5, 1).width, 28);
  EXPECT_INPUT_ERROR(image_grid(std::vector<uint8_t>(100), 1), "image_grid");
}

}  // namespace
}  // namespace rbm
