// IDX files (the MNIST format: big-endian header, then unsigned bytes), raw or gzip-compressed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rbm {

struct IdxImages {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // (count, rows * cols), row-major, as stored (0..255)
};

// Magic 0x00000803: unsigned bytes, rank 3 (count, rows, cols). Throws InputError naming the file
// and the problem (bad magic, type, rank, truncated or oversized data, bad gzip stream).
IdxImages read_idx_images(const std::filesystem::path& path);

// Magic 0x00000801: unsigned bytes, rank 1 (count). Throws like read_idx_images.
std::vector<uint8_t> read_idx_labels(const std::filesystem::path& path);

// The same on a file's bytes already in memory (raw or gzip); `path` only names it in messages.
IdxImages parse_idx_images(const std::filesystem::path& path, std::string bytes);
std::vector<uint8_t> parse_idx_labels(const std::filesystem::path& path, std::string bytes);

}  // namespace rbm
