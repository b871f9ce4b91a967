// Binarized images in memory, and the MNIST selection (digit, split) of design.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace rbm {

struct Dataset {
  int64_t rows = 0;
  int width = 28, height = 28;
  std::vector<uint8_t> pixels;  // (rows, width * height), row-major, each 0 or 1
  std::vector<uint8_t> labels;  // (rows)
  int cols() const { return width * height; }
  const uint8_t* row(int64_t r) const { return pixels.data() + r * cols(); }
};

enum class Split { all, train, test };
Split parse_split(const std::string& text);  // "all" | "train" | "test", else InputError
const char* split_name(Split split);

// Reads the four MNIST IDX files (raw or .gz) from dir, keeps the images of `digit` (all ten when
// empty) from the split (all = train then test), binarized as pixel > 127.5. Throws InputError
// naming the file and the problem; a missing directory's message says to run scripts/fetch_mnist.
Dataset load_mnist(const std::filesystem::path& dir, std::optional<int> digit, Split split);

// The name of the first of the split's IDX files (images, then labels; train's before test's)
// that is not in dir, raw or .gz, or none when all are there (or dir is not a directory, which
// load_mnist names). A symbolic link that leads nowhere is there: load_mnist says what it is.
// For `eval`, which can score the test images without the train split's files.
std::optional<std::string> missing_mnist_file(const std::filesystem::path& dir, Split split);

// The per-pixel mean of the images (cols,), as double.
std::vector<double> pixel_means(const Dataset& data);

}  // namespace rbm
