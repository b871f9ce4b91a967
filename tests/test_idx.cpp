// IDX reading and the MNIST loader: the real files (scripts/fetch_mnist) for counts and
// binarization, and hand-made broken files, each of which must be refused with a message naming
// the file and the problem.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "host/dataset.hpp"
#include "host/idx.hpp"
#include "tests/idx_util.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

using test::gzip;
using test::idx_file;
using test::TempDir;
using test::write_bytes;

const std::filesystem::path kMnistDir = RBM_MNIST_DIR;

// A tiny MNIST-shaped split: n images of 28x28 where image k has every pixel equal to pixel(k).
struct TinySplit {
  std::string images, labels;
};
TinySplit tiny_split(const std::vector<uint8_t>& pixel, const std::vector<uint8_t>& labels) {
  std::string data;
  for (const uint8_t p : pixel) data.append(784, static_cast<char>(p));
  return {idx_file(0x803, {static_cast<uint32_t>(pixel.size()), 28, 28}, data),
          idx_file(0x801, {static_cast<uint32_t>(labels.size())},
                   std::string(labels.begin(), labels.end()))};
}

void write_split(const TempDir& dir, const std::string& prefix, const TinySplit& split,
                 const std::string& suffix = "") {
  write_bytes(dir / (prefix + "-images-idx3-ubyte" + suffix), split.images);
  write_bytes(dir / (prefix + "-labels-idx1-ubyte" + suffix), split.labels);
}

class RealMnist : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kMnistDir / "train-images-idx3-ubyte")) {
      GTEST_SKIP() << "no MNIST in " << kMnistDir << ": run scripts/fetch_mnist";
    }
  }
};

// --- the real MNIST files -----------------------------------------------------------------------

TEST_F(RealMnist, DigitThreeCountsPerSplit) {
  const Dataset all = load_mnist(kMnistDir, 3, Split::all);
  EXPECT_EQ(all.rows, 7141);
  EXPECT_EQ(load_mnist(kMnistDir, 3, Split::train).rows, 6131);
  EXPECT_EQ(load_mnist(kMnistDir, 3, Split::test).rows, 1010);
  EXPECT_EQ(all.width, 28);
  EXPECT_EQ(all.height, 28);
  EXPECT_EQ(all.pixels.size(), size_t{7141} * 784);
  EXPECT_TRUE(std::all_of(all.labels.begin(), all.labels.end(), [](uint8_t l) { return l == 3; }));
}

TEST_F(RealMnist, AllDigitsAreBinary) {
  const Dataset all = load_mnist(kMnistDir, std::nullopt, Split::all);
  EXPECT_EQ(all.rows, 70000);
  EXPECT_EQ(all.labels.size(), size_t{70000});
  EXPECT_TRUE(std::all_of(all.pixels.begin(), all.pixels.end(), [](uint8_t p) { return p <= 1; }));
  std::vector<int> per_digit(10, 0);
  for (const uint8_t l : all.labels) ++per_digit[l];
  EXPECT_EQ(per_digit[3], 7141);
  // Roughly a fifth of MNIST's pixels are ink after binarization.
  const double ink = std::accumulate(all.pixels.begin(), all.pixels.end(), 0.0) /
                     static_cast<double>(all.pixels.size());
  EXPECT_GT(ink, 0.1);
  EXPECT_LT(ink, 0.2);
}

TEST_F(RealMnist, BinarizesTheRawPixelsInFileOrder) {
  const IdxImages raw = read_idx_images(kMnistDir / "t10k-images-idx3-ubyte");
  const std::vector<uint8_t> labels = read_idx_labels(kMnistDir / "t10k-labels-idx1-ubyte");
  ASSERT_EQ(raw.count, 10000);
  ASSERT_EQ(labels.size(), size_t{10000});
  const Dataset sevens = load_mnist(kMnistDir, 7, Split::test);
  // MNIST's first test image is a 7.
  ASSERT_EQ(labels[0], 7);
  for (int p = 0; p < 784; ++p) EXPECT_EQ(sevens.row(0)[p], raw.pixels[p] > 127 ? 1 : 0);
}

// --- hand-made files --------------------------------------------------------------------------

TEST(Mnist, BinarizesAt128AndKeepsTrainBeforeTest) {
  TempDir dir;
  write_split(dir, "train", tiny_split({127, 128, 0}, {1, 1, 2}));
  write_split(dir, "t10k", tiny_split({255}, {1}));
  const Dataset ones = load_mnist(dir.path(), 1, Split::all);
  ASSERT_EQ(ones.rows, 3);
  EXPECT_EQ(ones.row(0)[0], 0);  // 127
  EXPECT_EQ(ones.row(1)[0], 1);  // 128
  EXPECT_EQ(ones.row(2)[0], 1);  // 255, from the test split
  const std::vector<double> means = pixel_means(ones);
  ASSERT_EQ(means.size(), size_t{784});
  EXPECT_DOUBLE_EQ(means[0], 2.0 / 3.0);
  EXPECT_EQ(load_mnist(dir.path(), std::nullopt, Split::train).rows, 3);
  EXPECT_EQ(load_mnist(dir.path(), 2, Split::test).rows, 0);
}

TEST(Mnist, ReadsGzippedFiles) {
  TempDir dir;
  const TinySplit split = tiny_split({200, 10}, {4, 5});
  write_split(dir, "train", {gzip(split.images), gzip(split.labels)}, ".gz");
  write_split(dir, "t10k", split);
  EXPECT_EQ(load_mnist(dir.path(), 4, Split::all).rows, 2);
  const IdxImages images = read_idx_images(dir / "train-images-idx3-ubyte.gz");
  EXPECT_EQ(images.count, 2);
  EXPECT_EQ(images.pixels[784], 10);
}

// Files larger than the reader's pieces (256 KB), raw and gzip (in two members, the second
// starting mid-piece), give the same images.
TEST(Mnist, ReadsFilesLargerThanAPieceTheSameRawAndGzipped) {
  TempDir raw_dir, gz_dir;
  std::vector<uint8_t> pixel, labels;
  for (int k = 0; k < 3001; ++k) {
    pixel.push_back(static_cast<uint8_t>(k * 37 % 256));
    labels.push_back(static_cast<uint8_t>(k * 7 % 10));
  }
  const TinySplit split = tiny_split(pixel, labels);
  write_split(raw_dir, "train", split);
  const size_t cut = split.images.size() / 3 + 5;
  write_split(
      gz_dir, "train",
      {gzip(split.images.substr(0, cut)) + gzip(split.images.substr(cut)), gzip(split.labels)},
      ".gz");
  const IdxImages images = read_idx_images(gz_dir / "train-images-idx3-ubyte.gz");
  EXPECT_EQ(images.pixels, read_idx_images(raw_dir / "train-images-idx3-ubyte").pixels);
  ASSERT_EQ(images.pixels.size(), size_t{3001} * 784);
  for (const int digit : {0, 3, 9}) {
    const Dataset from_raw = load_mnist(raw_dir.path(), digit, Split::train);
    const Dataset from_gz = load_mnist(gz_dir.path(), digit, Split::train);
    EXPECT_EQ(from_raw.rows, 300 + (digit == 0));  // k * 7 % 10 == digit for one k in ten
    EXPECT_EQ(from_gz.rows, from_raw.rows);
    EXPECT_EQ(from_gz.pixels, from_raw.pixels);
    for (int64_t r = 0; r < from_raw.rows; ++r) {
      // Row r is image k = 10 r + j, where j * 7 % 10 == digit; its pixels are (k * 37) % 256.
      int j = 0;
      while (j * 7 % 10 != digit) ++j;
      const int k = static_cast<int>(10 * r) + j;
      EXPECT_EQ(from_raw.row(r)[0], (k * 37 % 256) >= 128 ? 1 : 0) << "row " << r;
    }
  }
}

// The in-memory parsers (the fuzzer's) read raw and gzip bytes as the file readers read files.
TEST(Idx, ParsesBytesInMemoryAsTheFileReaderReadsFiles) {
  TempDir dir;
  const std::string images = idx_file(0x803, {2, 2, 3}, "abcdefghijkl");
  const std::string labels = idx_file(0x801, {3}, "\x07\x08\x09");
  for (const bool packed : {false, true}) {
    const std::string images_bytes = packed ? gzip(images) : images;
    const std::string labels_bytes = packed ? gzip(labels) : labels;
    write_bytes(dir / "images", images_bytes);
    write_bytes(dir / "labels", labels_bytes);
    const IdxImages parsed = parse_idx_images("in memory", images_bytes);
    EXPECT_EQ(parsed.count, 2);
    EXPECT_EQ(parsed.rows, 2);
    EXPECT_EQ(parsed.cols, 3);
    EXPECT_EQ(parsed.pixels, read_idx_images(dir / "images").pixels);
    EXPECT_EQ(std::string(parsed.pixels.begin(), parsed.pixels.end()), "abcdefghijkl");
    EXPECT_EQ(parse_idx_labels("in memory", labels_bytes), (std::vector<uint8_t>{7, 8, 9}));
    EXPECT_EQ(read_idx_labels(dir / "labels"), (std::vector<uint8_t>{7, 8, 9}));
    EXPECT_INPUT_ERROR(parse_idx_labels("in memory", labels_bytes.substr(0, 10)), "in memory",
                       packed ? "truncated gzip data" : "truncated: header says 3 labels");
  }
}

TEST(Idx, ReadsConcatenatedGzipMembers) {
  TempDir dir;
  const std::string file = idx_file(0x801, {4}, "\x01\x02\x03\x04");
  write_bytes(dir / "labels.gz", gzip(file.substr(0, 6)) + gzip(file.substr(6)));
  EXPECT_EQ(read_idx_labels(dir / "labels.gz"), (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST(Idx, RejectsBadMagic) {
  TempDir dir;
  write_bytes(dir / "x", "GIF89a and then some more bytes");
  EXPECT_INPUT_ERROR(read_idx_images(dir / "x"), (dir / "x").string(), "bad magic");
}

TEST(Idx, RejectsWrongTypeAndRank) {
  TempDir dir;
  write_bytes(dir / "floats", idx_file(0x0D03, {1, 1, 1}, "abcd"));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "floats"), "floats", "data type 0x0d");
  write_bytes(dir / "labels", idx_file(0x801, {1}, "\x01"));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "labels"), "labels", "rank 1, expected 3");
  write_bytes(dir / "images", idx_file(0x803, {1, 1, 1}, "\x01"));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "images"), "images", "rank 3, expected 1");
}

TEST(Idx, RejectsTruncatedHeader) {
  TempDir dir;
  write_bytes(dir / "short", idx_file(0x803, {60000, 28}, ""));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "short"), "short", "truncated header");
  write_bytes(dir / "tiny", std::string(2, '\0'));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "tiny"), "tiny", "truncated header",
                     "holds 2 bytes, an IDX header needs 8");
  write_bytes(dir / "one", std::string(1, '\0'));  // one byte, not "1 bytes"
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "one"), "one", "holds 1 byte, an IDX header needs 8");
  write_bytes(dir / "one label", idx_file(0x801, {1}, "\x01\x02"));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "one label"), "header says 1 label = 1 byte but");
}

TEST(Idx, RejectsTruncatedAndOversizedData) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte",
              idx_file(0x803, {60000, 28, 28}, std::string(1000, 'x')));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "train-images-idx3-ubyte"),
                     (dir / "train-images-idx3-ubyte").string() +
                         ": truncated: header says 60000 images of 28x28 = 47040000 bytes but the "
                         "file holds 1000");
  write_bytes(dir / "labels", idx_file(0x801, {3}, "\x01\x02\x03\x04"));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "labels"), "labels", "trailing data", "3 labels");
}

TEST(Idx, RejectsAbsurdDimensionsWithoutAllocating) {
  TempDir dir;
  write_bytes(dir / "huge", idx_file(0x803, {60000, 1u << 31, 1u << 31}, "xyz"));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "huge"), "huge", "absurd dimensions");
  // No overflow here, but far more than the file holds.
  write_bytes(dir / "big", idx_file(0x803, {1u << 31, 1u << 15, 1u << 15}, "xyz"));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "big"), "big", "truncated", "2305843009213693952 bytes");
  write_bytes(dir / "wide", idx_file(0x803, {1, 1u << 31, 1u << 31}, "xyz"));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "wide"), "wide", "unusable image size");
  write_bytes(dir / "flat", idx_file(0x803, {0, 0, 28}, ""));
  EXPECT_INPUT_ERROR(read_idx_images(dir / "flat"), "flat", "image size 0x28");
}

TEST(Idx, RejectsBadGzip) {
  TempDir dir;
  write_bytes(dir / "garbage.gz", std::string("\x1f\x8b") + "this is not deflate data at all");
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "garbage.gz"), "garbage.gz", "bad gzip data");
  const std::string packed = gzip(idx_file(0x801, {1000}, std::string(1000, '\x07')));
  write_bytes(dir / "cut.gz", packed.substr(0, packed.size() / 2));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "cut.gz"), "cut.gz", "truncated gzip data");
  write_bytes(dir / "twice.gz", gzip(packed));
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "twice.gz"), "twice.gz", "bad magic 0x1f8b",
                     "compressed twice?");
  write_bytes(dir / "garbage_after.gz", packed + "\x01 is not a gzip member");
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "garbage_after.gz"), "garbage_after.gz",
                     "bytes after the end of the gzip data that are not another gzip member");
}

// Zero bytes after the last gzip member (padding to a block), which gzip -t accepts, are read as
// the end of the data, across pieces of the file too (300 KB of zeros: two 256 KB pieces); a
// non-zero byte after them is refused, wherever it is.
TEST(Idx, ReadsGzipDataPaddedWithZeros) {
  TempDir dir;
  const std::string labels(1000, '\x07');
  const std::string packed = gzip(idx_file(0x801, {1000}, labels));
  for (const size_t zeros : {size_t{1}, size_t{10}, size_t{300} << 10}) {
    SCOPED_TRACE(zeros);
    write_bytes(dir / "padded.gz", packed + std::string(zeros, '\0'));
    const std::vector<uint8_t> read = read_idx_labels(dir / "padded.gz");
    EXPECT_EQ(std::string(read.begin(), read.end()), labels);
    write_bytes(dir / "padded_then_more.gz", packed + std::string(zeros, '\0') + "\x01");
    EXPECT_INPUT_ERROR(read_idx_labels(dir / "padded_then_more.gz"), "padded_then_more.gz",
                       "bytes after the zero padding that ends the gzip data");
    write_bytes(dir / "padded_then_member.gz", packed + std::string(zeros, '\0') + packed);
    EXPECT_INPUT_ERROR(read_idx_labels(dir / "padded_then_member.gz"), "padded_then_member.gz",
                       "bytes after the zero padding that ends the gzip data");
  }
}

// A gzip file that inflates without end is refused once it passes 1 GiB (MNIST's largest file is
// 47 MB), here in the trailing data after a valid header: 129 members of 8 MiB of zeros each.
TEST(Idx, RefusesGzipThatInflatesBeyondAGibibyte) {
  TempDir dir;
  const std::string zeros = gzip(std::string(size_t{8} << 20, '\0'));
  std::string bomb = gzip(idx_file(0x801, {1}, "\x01"));
  for (int k = 0; k < 129; ++k) bomb += zeros;
  write_bytes(dir / "bomb.gz", bomb);
  EXPECT_INPUT_ERROR(read_idx_labels(dir / "bomb.gz"), "bomb.gz",
                     "decompress to more than 1073741824 bytes");
}

// A gzip file's length is known only once inflated: a header promising more than the 1 GiB bound
// is refused at once, before the labels are read or anything is allocated for the images (with
// 2^28 labels to match, it gave std::bad_alloc).
TEST(Mnist, RefusesAGzipHeaderPromisingMoreThanTheBound) {
  TempDir dir;
  write_bytes(dir / "train-images-idx3-ubyte.gz",
              gzip(idx_file(0x803, {1u << 28, 28, 28}, std::string(784, '\x01'))));
  write_bytes(dir / "train-labels-idx1-ubyte.gz", gzip(idx_file(0x801, {1}, "\x01")));
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 0, Split::train), "train-images-idx3-ubyte.gz",
                     "header says 268435456 images of 28x28 = 210453397504 bytes, more than the "
                     "1073741824");
}

// A gzip file's header is checked against its data only by reading them: when the counts differ,
// the images file whose header misstates its count is the one named, not the labels.
TEST(Mnist, NamesTheGzipImagesFileWhoseHeaderMisstatesItsCount) {
  TempDir dir;
  const TinySplit split = tiny_split({1, 2, 3}, {0, 1, 2});
  std::string images = split.images;
  images[7] = 2;  // the count's low byte: 2 images claimed, 3 held
  write_split(dir, "train", {gzip(images), gzip(split.labels)}, ".gz");
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), std::nullopt, Split::train),
                     (dir / "train-images-idx3-ubyte.gz").string() +
                         ": trailing data: header says 2 images of 28x28 = 1568 bytes but the "
                         "decompressed file holds 2352");
}

TEST(Mnist, RefusesFifosAndDanglingLinksWithoutWaiting) {
  TempDir dir;
  write_split(dir, "train", tiny_split({1}, {3}));
  std::filesystem::remove(dir / "train-images-idx3-ubyte");
  // Opening a FIFO for reading waits for a writer unless told not to.
  ASSERT_EQ(::mkfifo((dir / "train-images-idx3-ubyte").c_str(), 0600), 0);
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 3, Split::train), "train-images-idx3-ubyte",
                     "not a regular file");
  std::filesystem::remove(dir / "train-images-idx3-ubyte");
  std::filesystem::create_symlink(dir / "nowhere", dir / "train-images-idx3-ubyte");
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 3, Split::train), "train-images-idx3-ubyte",
                     "a symbolic link that leads to no file");
}

TEST(Mnist, RejectsCountMismatchBetweenImagesAndLabels) {
  TempDir dir;
  write_split(dir, "train", tiny_split({1, 2, 3}, {0, 1}));
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), std::nullopt, Split::train),
                     (dir / "train-labels-idx1-ubyte").string(),
                     "holds 2 labels but train-images-idx3-ubyte holds 3 images");
}

TEST(Mnist, RejectsLabelsThatAreNotDigitsAndNon28x28Images) {
  TempDir dir;
  write_split(dir, "train", tiny_split({1, 2}, {0, 12}));
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 0, Split::train), "train-labels-idx1-ubyte",
                     "label 12 at index 1");
  write_bytes(dir / "train-images-idx3-ubyte", idx_file(0x803, {2, 2, 2}, "12345678"));
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 0, Split::train), "train-images-idx3-ubyte",
                     "images are 2x2");
}

TEST(Mnist, MissingDataSaysHowToFetchIt) {
  TempDir dir;
  EXPECT_INPUT_ERROR(load_mnist(dir / "nowhere", 3, Split::all), "nowhere", "scripts/fetch_mnist",
                     "--data");
  write_split(dir, "train", tiny_split({1}, {3}));
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 3, Split::all), "t10k-images-idx3-ubyte", "not found",
                     "scripts/fetch_mnist", "--data");
  EXPECT_EQ(load_mnist(dir.path(), 3, Split::train).rows, 1);
}

TEST(Mnist, RejectsDigitOutOfRange) {
  TempDir dir;
  EXPECT_INPUT_ERROR(load_mnist(dir.path(), 10, Split::all), "digit 10");
}

TEST(Split, ParsesAndNames) {
  for (const Split split : {Split::all, Split::train, Split::test}) {
    EXPECT_EQ(parse_split(split_name(split)), split);
  }
  EXPECT_INPUT_ERROR(parse_split("validation"), "validation");
}

}  // namespace
}  // namespace rbm
