// NumPy .npy files (format 1.0; 2.0 also read): little-endian float32 ('<f4') for parameters and
// uint8 ('|u1') for PCD's chains, C order, 1-D or 2-D; `sample`'s states as float32 or packed bits.
// Loadable with numpy.load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"

namespace rbm {

template <class T>
struct NpyArrayOf {
  std::vector<int64_t> shape;  // 1 or 2 dimensions
  std::vector<T> data;         // prod(shape) values, C order
};
using NpyArray = NpyArrayOf<float>;
using NpyArrayU8 = NpyArrayOf<uint8_t>;

// Write atomically (host/atomic_file.hpp). Throw InputError when the shape is not 1-D or 2-D or
// does not hold data.size() values.
void write_npy(const std::filesystem::path& path, const std::vector<float>& data,
               std::vector<int64_t> shape);
void write_npy_u8(const std::filesystem::path& path, const std::vector<uint8_t>& data,
                  std::vector<int64_t> shape);

// How `sample` writes states (N, d) of 0/1 bytes: float32 0.0/1.0 ('<f4', (N, d)), or 8 units to a
// byte as numpy.packbits(states, axis=1) writes them ('|u1', (N, ceil(d / 8)), unit i in byte
// i / 8 at bit 7 - i % 8; numpy.unpackbits(a, axis=1, count=d) gives the states back). A staged
// file (host/atomic_file.hpp: in place once committed) written a block of rows at a time, so that
// the states need never be all in memory. Errors are InputErrors naming the file; the temporary
// file goes with the NpyStatesFile unless finish() has handed it on.
enum class StatesFormat { float32, packed };
class NpyStatesFile {
 public:
  // Stages the header of (rows, cols) states; cols >= 1.
  NpyStatesFile(const std::filesystem::path& path, int64_t rows, int64_t cols, StatesFormat format);
  // Writes the next whole rows ((n, cols) row-major); throws when they are not whole rows or more
  // than the shape has left.
  void append_rows(std::span<const uint8_t> states);
  // Once every row has come (else throws): the file, synced, for commit().
  StagedFile finish();
  // The size of the file: header and data.
  static uint64_t file_bytes(int64_t rows, int64_t cols, StatesFormat format);

 private:
  // The file's header and the bytes of one row in it; throws when the shape cannot be written.
  struct Layout {
    std::string header;
    size_t row_bytes;
  };
  static Layout layout_of(const std::filesystem::path& path, int64_t rows, int64_t cols,
                          StatesFormat format);
  NpyStatesFile(const std::filesystem::path& path, int64_t rows, int64_t cols, StatesFormat format,
                Layout layout);

  std::filesystem::path path_;
  int64_t rows_, cols_;
  bool packed_;
  size_t row_bytes_;  // in the file
  StagedFile file_;
  int64_t rows_written_ = 0;
  std::string piece_;  // the encoded rows, up to 4 MiB at a time
};

// The bytes write_npy writes (for checksums of what goes to disk); `path` names it in errors.
std::string encode_npy(const std::filesystem::path& path, const std::vector<float>& data,
                       const std::vector<int64_t>& shape);
std::string encode_npy_u8(const std::filesystem::path& path, const std::vector<uint8_t>& data,
                          const std::vector<int64_t>& shape);

// A shape as numpy prints it: "(784, 20)", "(20,)".
std::string npy_shape_text(const std::vector<int64_t>& shape);

// Throw InputError naming the file and the problem: bad magic or version, an unparsable header,
// another dtype, Fortran order, a shape that is not 1-D or 2-D, or data of the wrong length.
NpyArray read_npy(const std::filesystem::path& path);
NpyArrayU8 read_npy_u8(const std::filesystem::path& path);

// The same checks on a file's bytes already in memory; `path` only names it in messages.
NpyArray parse_npy(const std::filesystem::path& path, std::string bytes);
NpyArrayU8 parse_npy_u8(const std::filesystem::path& path, std::string bytes);

}  // namespace rbm
