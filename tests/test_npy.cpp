// .npy writing and reading (byte-exact headers, round trips, refusal of foreign or broken files),
// and the atomic writer all output files go through.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/npy.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

using test::TempDir;
using test::write_bytes;

// A version 1.0 .npy file with the given header dict, padded to 64 bytes as numpy pads it.
std::string npy_file(const std::string& dict, const std::string& data) {
  std::string header = dict;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) +
         static_cast<char>(header.size() >> 8) + header + data;
}

std::string float_bytes(const std::vector<float>& values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

TEST(Npy, HeaderBytesMatchNumpySave) {
  // What numpy 1.24's np.save(f, np.zeros((3, 4), np.float32)) writes before the data: 128 bytes.
  TempDir dir;
  write_npy(dir / "W.npy", std::vector<float>(12, 0.0f), {3, 4});
  const std::string file = read_file(dir / "W.npy");
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict +
                               std::string(128 - 10 - dict.size() - 1, ' ') + "\n";
  ASSERT_EQ(file.size(), 128 + 12 * sizeof(float));
  EXPECT_EQ(file.substr(0, 128), expected);
}

TEST(Npy, HeaderOfOneDimensionalArray) {
  TempDir dir;
  write_npy(dir / "b.npy", {1.0f, 2.0f, 3.0f, 4.0f, 5.0f}, {5});
  const std::string file = read_file(dir / "b.npy");
  EXPECT_EQ(file.size() % 4, 0u);
  EXPECT_NE(file.find("'shape': (5,), }"), std::string::npos);
  // The data start on a 64-byte boundary, right after the header's '\n'.
  EXPECT_EQ(file[file.size() - 5 * sizeof(float) - 1], '\n');
  EXPECT_EQ((file.size() - 5 * sizeof(float)) % 64, 0u);
}

TEST(Npy, RoundTripsFloat) {
  TempDir dir;
  const std::vector<float> b = {0.5f, -1.25f, 3e-8f, 1e30f, -0.0f};
  write_npy(dir / "b.npy", b, {5});
  const NpyArray b_read = read_npy(dir / "b.npy");
  EXPECT_EQ(b_read.shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(b_read.data, b);

  std::vector<float> w(784 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.001f - 1.0f;
  write_npy(dir / "W.npy", w, {784, 3});
  const NpyArray w_read = read_npy(dir / "W.npy");
  EXPECT_EQ(w_read.shape, (std::vector<int64_t>{784, 3}));
  EXPECT_EQ(w_read.data, w);
}

TEST(Npy, RoundTripsUint8) {
  TempDir dir;
  const std::vector<uint8_t> states = {0, 1, 1, 0, 1, 0};
  write_npy_u8(dir / "states.npy", states, {2, 3});
  EXPECT_NE(read_file(dir / "states.npy").find("'descr': '|u1'"), std::string::npos);
  const NpyArrayU8 read = read_npy_u8(dir / "states.npy");
  EXPECT_EQ(read.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(read.data, states);
}

TEST(Npy, ReadsOtherSpellingsOfTheHeader) {
  // Keys in another order, double quotes, no trailing comma, and format version 2.0.
  TempDir dir;
  const std::string data = float_bytes({1, 2, 3, 4, 5, 6});
  write_bytes(dir / "a.npy",
              npy_file("{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<f4\"}", data));
  EXPECT_EQ(read_npy(dir / "a.npy").shape, (std::vector<int64_t>{2, 3}));

  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\n";
  const std::string v2 = std::string("\x93NUMPY\x02\x00", 8) + static_cast<char>(dict.size()) +
                         std::string(3, '\0') + dict + data;
  write_bytes(dir / "v2.npy", v2);
  EXPECT_EQ(read_npy(dir / "v2.npy").data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(Npy, RejectsWrongDtype) {
  TempDir dir;
  write_npy_u8(dir / "u8.npy", {1, 2, 3, 4}, {4});
  EXPECT_INPUT_ERROR(read_npy(dir / "u8.npy"), (dir / "u8.npy").string(),
                     "dtype '|u1', expected '<f4'");
  write_bytes(dir / "f8.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
                                       std::string(8, '\0')));
  EXPECT_INPUT_ERROR(read_npy(dir / "f8.npy"), "f8.npy", "dtype '<f8'");
  write_npy(dir / "f4.npy", {1.0f}, {1});
  EXPECT_INPUT_ERROR(read_npy_u8(dir / "f4.npy"), "f4.npy", "expected '|u1'");
}

TEST(Npy, RejectsFortranOrder) {
  TempDir dir;
  write_bytes(dir / "F.npy", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                      float_bytes({1, 2, 3, 4})));
  EXPECT_INPUT_ERROR(read_npy(dir / "F.npy"), "F.npy", "Fortran order");
}

TEST(Npy, RejectsBrokenHeaders) {
  TempDir dir;
  const std::string data = float_bytes({1, 2});
  const std::vector<std::string> dicts = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2 }",
      "{'descr': '<f4', 'fortran_order': False }",
      "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
      "'descr': '<f4', 'fortran_order': False, 'shape': (2,)",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
  };
  for (const std::string& dict : dicts) {
    write_bytes(dir / "h.npy", npy_file(dict, data));
    EXPECT_INPUT_ERROR(read_npy(dir / "h.npy"), "h.npy", "bad .npy header");
  }
  // A header length that runs past the end of the file.
  write_bytes(dir / "long.npy", std::string("\x93NUMPY\x01\x00\xff\x7f{'descr'", 17));
  EXPECT_INPUT_ERROR(read_npy(dir / "long.npy"), "long.npy", "truncated .npy header");
  write_bytes(dir / "3d.npy",
              npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }", data));
  EXPECT_INPUT_ERROR(read_npy(dir / "3d.npy"), "3d.npy", "only 1-D and 2-D");
}

TEST(Npy, RejectsTruncatedOrTrailingData) {
  TempDir dir;
  write_npy(dir / "W.npy", std::vector<float>(20, 1.0f), {4, 5});
  const std::string file = read_file(dir / "W.npy");
  write_bytes(dir / "cut.npy", file.substr(0, file.size() - 3));
  EXPECT_INPUT_ERROR(read_npy(dir / "cut.npy"), "cut.npy", "truncated data", "needs 80 bytes",
                     "holds 77");
  write_bytes(dir / "long.npy", file + "xxxx");
  EXPECT_INPUT_ERROR(read_npy(dir / "long.npy"), "long.npy", "trailing data");
}

TEST(Npy, RejectsWrongMagicAndVersion) {
  TempDir dir;
  write_bytes(dir / "text.npy", "W = [[1, 2], [3, 4]]\n");
  EXPECT_INPUT_ERROR(read_npy(dir / "text.npy"), "text.npy", "bad magic");
  write_npy(dir / "W.npy", {1.0f}, {1});
  std::string file = read_file(dir / "W.npy");
  file[6] = '\x03';
  write_bytes(dir / "v3.npy", file);
  EXPECT_INPUT_ERROR(read_npy(dir / "v3.npy"), "v3.npy", "version 3.0");
  EXPECT_INPUT_ERROR(read_npy(dir / "absent.npy"), "absent.npy", "No such file");
}

TEST(Npy, WriterRejectsShapesThatDoNotFitTheData) {
  TempDir dir;
  EXPECT_INPUT_ERROR(write_npy(dir / "x.npy", {1, 2, 3}, {2, 2}), "x.npy", "shape (2, 2)");
  EXPECT_INPUT_ERROR(write_npy(dir / "x.npy", {1, 2}, {1, 1, 2}), "x.npy", "only 1-D and 2-D");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.npy"));
}

TEST(AtomicFile, ReplacesTheTargetAndLeavesNoTemporaryFile) {
  TempDir dir;
  write_file_atomic(dir / "run.json", "old");
  write_file_atomic(dir / "run.json", "new contents");
  EXPECT_EQ(read_file(dir / "run.json"), "new contents");
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(AtomicFile, ReportsThePathAndTheReason) {
  TempDir dir;
  EXPECT_INPUT_ERROR(write_file_atomic(dir / "missing" / "W.npy", "x"), "missing/W.npy",
                     "No such file or directory");
  // Renaming a file over a non-empty directory fails after the temporary file was written; the
  // temporary file must not be left behind.
  std::filesystem::create_directories(dir / "taken" / "inside");
  EXPECT_INPUT_ERROR(write_file_atomic(dir / "taken", "x"), "taken", "cannot rename");
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

// A states file given `states` ((rows, cols) row-major) a block of block_rows rows at a time, the
// last block shorter, as `sample` gives a block of chains at a time.
StagedFile stage_in_blocks(const std::filesystem::path& path, const std::vector<uint8_t>& states,
                           int64_t rows, int64_t cols, StatesFormat format, int64_t block_rows) {
  NpyStatesFile file(path, rows, cols, format);
  for (int64_t first = 0; first < rows; first += block_rows) {
    const int64_t n = std::min(block_rows, rows - first);
    file.append_rows(std::span(states).subspan(static_cast<size_t>(first * cols),
                                               static_cast<size_t>(n * cols)));
  }
  return file.finish();
}

// sample's --format float: the states as 0.0/1.0 float32, the same bytes write_npy writes; 3000
// rows of 784 given in blocks of 2000 cross the writer's 4 MiB pieces (1337 rows each), and a
// block's end cuts a piece short.
TEST(NpyStates, FloatIsTheStatesAsFloat32) {
  TempDir dir;
  const int64_t rows = 3000, cols = 784;
  std::vector<uint8_t> states(static_cast<size_t>(rows * cols));
  for (size_t k = 0; k < states.size(); ++k) states[k] = static_cast<uint8_t>((k * 7919 % 13) < 6);
  const std::vector<float> want(states.begin(), states.end());
  for (const int64_t block_rows : {int64_t{1}, int64_t{2000}, rows}) {
    stage_in_blocks(dir / "s.npy", states, rows, cols, StatesFormat::float32, block_rows).commit();
    EXPECT_EQ(read_file(dir / "s.npy"), encode_npy("s.npy", want, {rows, cols}))
        << "blocks of " << block_rows << " rows";
  }
}

// --format packed is numpy.packbits(states, axis=1): unit i in byte i / 8 at bit 7 - i % 8, the
// last byte's unused bits 0. Here d = 10: two bytes a row.
TEST(NpyStates, PackedIsNumpysPackbitsAlongRows) {
  TempDir dir;
  const std::vector<uint8_t> states = {1, 0, 0, 0, 0, 0, 0, 1, 1, 0,   // 0x81 0x80
                                       0, 1, 1, 1, 0, 0, 0, 0, 0, 1};  // 0x70 0x40
  stage_in_blocks(dir / "p.npy", states, 2, 10, StatesFormat::packed, 1).commit();
  const NpyArrayU8 packed = read_npy_u8(dir / "p.npy");
  EXPECT_EQ(packed.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(packed.data, (std::vector<uint8_t>{0x81, 0x80, 0x70, 0x40}));

  // Many rows (blocks across the writer's pieces) unpack to the states.
  const int64_t rows = 50000, cols = 784;
  std::vector<uint8_t> many(static_cast<size_t>(rows * cols));
  for (size_t k = 0; k < many.size(); ++k) many[k] = static_cast<uint8_t>((k * 104729 % 11) < 4);
  stage_in_blocks(dir / "many.npy", many, rows, cols, StatesFormat::packed, 28672).commit();
  const NpyArrayU8 read = read_npy_u8(dir / "many.npy");
  ASSERT_EQ(read.shape, (std::vector<int64_t>{rows, 98}));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      const int bit = (read.data[static_cast<size_t>(r * 98 + i / 8)] >> (7 - i % 8)) & 1;
      ASSERT_EQ(bit, many[static_cast<size_t>(r * cols + i)]) << "row " << r << " unit " << i;
    }
  }
}

// Rows that are not whole, too many, or too few are refused, and nothing is left: neither the
// file nor its temporary. The size the file will have is known before.
TEST(NpyStates, RejectsRowsThatDoNotFitTheShape) {
  TempDir dir;
  const std::vector<uint8_t> three = {1, 0, 1}, four = {1, 0, 1, 1};
  {
    NpyStatesFile not_whole(dir / "s.npy", 2, 2, StatesFormat::packed);
    EXPECT_INPUT_ERROR(not_whole.append_rows(three), "s.npy",
                       "shape (2, 2): 3 values after 0 rows");
    NpyStatesFile too_many(dir / "t.npy", 3, 2, StatesFormat::float32);
    too_many.append_rows(four);
    EXPECT_INPUT_ERROR(too_many.append_rows(four), "t.npy", "shape (3, 2): 4 values after 2 rows");
    NpyStatesFile too_few(dir / "u.npy", 3, 2, StatesFormat::float32);
    too_few.append_rows(four);
    EXPECT_INPUT_ERROR(too_few.finish(), "u.npy", "shape (3, 2): only 2 rows");
  }
  EXPECT_INPUT_ERROR(NpyStatesFile(dir / "s.npy", 0, 0, StatesFormat::float32), "s.npy",
                     "cannot write shape (0, 0)");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  const std::vector<uint8_t> states(3 * 10, 1);
  for (const StatesFormat format : {StatesFormat::float32, StatesFormat::packed}) {
    stage_in_blocks(dir / "s.npy", states, 3, 10, format, 2).commit();
    EXPECT_EQ(std::filesystem::file_size(dir / "s.npy"), NpyStatesFile::file_bytes(3, 10, format));
  }
}

// A piece writer that throws leaves neither the target nor a temporary file.
TEST(AtomicFile, AWriterThatThrowsLeavesNothing) {
  TempDir dir;
  int calls = 0;
  EXPECT_THROW(write_file_atomic(dir / "x.npy",
                                 [&]() -> std::string_view {
                                   if (++calls == 1) return "first piece";
                                   throw std::runtime_error("encoder failed");
                                 }),
               std::runtime_error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

// Found by fuzz/fuzz_npy (UndefinedBehaviorSanitizer): an empty array's data pointer may be null.
TEST(Npy, RoundTripsAnEmptyArray) {
  TempDir dir;
  write_npy(dir / "empty.npy", {}, {0, 3});
  const NpyArray array = read_npy(dir / "empty.npy");
  EXPECT_EQ(array.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(array.data.empty());
  EXPECT_EQ(parse_npy("same", read_file(dir / "empty.npy")).shape, array.shape);
}

}  // namespace
}  // namespace rbm
