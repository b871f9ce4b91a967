// Reading IDX files (raw or gzip) and, on top of them, the MNIST dataset of host/dataset.hpp.
#include "host/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>

#include "host/atomic_file.hpp"
#include "host/dataset.hpp"
#include "host/errors.hpp"

namespace rbm {
namespace {

// A decompressed IDX file larger than this is not one we want (MNIST's largest is 47 MB); the
// bound turns a gzip bomb into a message rather than an exhausted machine.
constexpr size_t kMaxDecompressed = size_t{1} << 30;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw InputError(path.string() + ": " + what);
}

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

// Inflates every gzip member of `packed` (a .gz may hold several, concatenated), growing the
// output by doubling up to kMaxDecompressed.
std::string gunzip(const std::filesystem::path& path, const std::string& packed) {
  if (packed.size() > kMaxDecompressed) fail(path, "gzip file too large for an IDX file");
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header and trailer rather than a zlib one.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot initialise zlib");
  struct InflateEnd {
    z_stream* zs;
    ~InflateEnd() { inflateEnd(zs); }
  } end_inflate{&zs};

  // Both sizes stay below kMaxDecompressed, so they fit zlib's 32-bit counts.
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data()));
  zs.avail_in = static_cast<uInt>(packed.size());
  std::string out(std::min(kMaxDecompressed, std::max<size_t>(4 * packed.size(), 1 << 16)), '\0');
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  for (;;) {
    if (zs.avail_out == 0) {
      const size_t have = out.size();
      if (have == kMaxDecompressed) {
        fail(path, "gzip data decompress to more than " + std::to_string(kMaxDecompressed) +
                       " bytes, too large for an IDX file");
      }
      out.resize(std::min(kMaxDecompressed, 2 * out.size()));
      zs.next_out = reinterpret_cast<Bytef*>(out.data() + have);
      zs.avail_out = static_cast<uInt>(out.size() - have);
    }
    const int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      inflateReset(&zs);  // another gzip member follows
      continue;
    }
    // Z_BUF_ERROR: no progress possible, and output space is never what is missing here.
    if (rc == Z_BUF_ERROR) fail(path, "truncated gzip data");
    if (rc != Z_OK) fail(path, std::string("bad gzip data: ") + (zs.msg ? zs.msg : "zlib error"));
  }
  out.resize(out.size() - zs.avail_out);
  return out;
}

uint32_t load_be32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data()) + offset;
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// An IDX file of unsigned bytes whose data are bytes[data_offset...], (dims[0], dims[1], ...).
struct IdxFile {
  std::string bytes;  // decompressed
  std::vector<uint32_t> dims;
  size_t data_offset = 0;
};

// Reads, decompresses and checks an IDX file of unsigned bytes of the given rank: magic, type,
// rank, and that the dimensions match the data length, all before anything is allocated for them.
IdxFile check_idx(const std::filesystem::path& path, std::string file_bytes, int rank) {
  IdxFile idx;
  idx.bytes = std::move(file_bytes);
  const bool gzipped = is_gzip(idx.bytes);
  if (gzipped) idx.bytes = gunzip(path, idx.bytes);
  const char* holds = gzipped ? "the decompressed file holds " : "the file holds ";

  const size_t header_len = 4 + 4 * static_cast<size_t>(rank);
  if (idx.bytes.size() < 4) {
    fail(path, "truncated header: " + std::string(holds) + std::to_string(idx.bytes.size()) +
                   " bytes, an IDX header needs " + std::to_string(header_len));
  }
  const uint32_t magic = load_be32(idx.bytes, 0);
  const uint32_t expected_magic = 0x0800u | static_cast<uint32_t>(rank);
  if (magic >> 16 != 0) {
    char text[80];
    std::snprintf(text, sizeof text, "not an IDX file: bad magic 0x%08x (expected 0x%08x)", magic,
                  expected_magic);
    fail(path, text);
  }
  if ((magic >> 8 & 0xff) != 0x08) {
    char text[80];
    std::snprintf(text, sizeof text, "IDX data type 0x%02x, expected 0x08 (unsigned byte)",
                  magic >> 8 & 0xff);
    fail(path, text);
  }
  if (static_cast<int>(magic & 0xff) != rank) {
    fail(path, "IDX rank " + std::to_string(magic & 0xff) + ", expected " + std::to_string(rank) +
                   (rank == 3 ? " (images)" : " (labels)"));
  }
  if (idx.bytes.size() < header_len) {
    fail(path, "truncated header: " + std::string(holds) + std::to_string(idx.bytes.size()) +
                   " bytes, an IDX header of rank " + std::to_string(rank) + " needs " +
                   std::to_string(header_len));
  }

  std::string shape;
  for (int i = 0; i < rank; ++i) {
    idx.dims.push_back(load_be32(idx.bytes, 4 + 4 * static_cast<size_t>(i)));
    shape += (i ? " x " : "") + std::to_string(idx.dims.back());
  }
  // The data size, checked for overflow before anything is compared or allocated.
  uint64_t data_len = 1;
  for (const uint32_t dim : idx.dims) {
    if (__builtin_mul_overflow(data_len, uint64_t{dim}, &data_len)) {
      fail(path, "absurd dimensions " + shape + ": their product overflows 64 bits");
    }
  }
  const std::string described = rank == 3 ? std::to_string(idx.dims[0]) + " images of " +
                                                std::to_string(idx.dims[1]) + "x" +
                                                std::to_string(idx.dims[2])
                                          : std::to_string(idx.dims[0]) + " labels";
  const size_t body_len = idx.bytes.size() - header_len;
  if (data_len > body_len) {
    fail(path, "truncated: header says " + described + " = " + std::to_string(data_len) +
                   " bytes but " + holds + std::to_string(body_len) + " after the " +
                   std::to_string(header_len) + "-byte header");
  }
  if (data_len < body_len) {
    fail(path, "trailing data: header says " + described + " = " + std::to_string(data_len) +
                   " bytes but " + holds + std::to_string(body_len) + " after the " +
                   std::to_string(header_len) + "-byte header");
  }
  idx.data_offset = header_len;
  return idx;
}

}  // namespace

IdxImages parse_idx_images(const std::filesystem::path& path, std::string bytes) {
  const IdxFile idx = check_idx(path, std::move(bytes), 3);
  if (idx.dims[1] == 0 || idx.dims[2] == 0 || idx.dims[1] > INT_MAX / idx.dims[2]) {
    fail(path,
         "unusable image size " + std::to_string(idx.dims[1]) + "x" + std::to_string(idx.dims[2]));
  }
  IdxImages images;
  images.count = idx.dims[0];
  images.rows = static_cast<int>(idx.dims[1]);
  images.cols = static_cast<int>(idx.dims[2]);
  images.pixels.assign(idx.bytes.begin() + static_cast<ptrdiff_t>(idx.data_offset),
                       idx.bytes.end());
  return images;
}

std::vector<uint8_t> parse_idx_labels(const std::filesystem::path& path, std::string bytes) {
  const IdxFile idx = check_idx(path, std::move(bytes), 1);
  return std::vector<uint8_t>(idx.bytes.begin() + static_cast<ptrdiff_t>(idx.data_offset),
                              idx.bytes.end());
}

IdxImages read_idx_images(const std::filesystem::path& path) {
  return parse_idx_images(path, read_file(path));
}

std::vector<uint8_t> read_idx_labels(const std::filesystem::path& path) {
  return parse_idx_labels(path, read_file(path));
}

Split parse_split(const std::string& text) {
  if (text == "all") return Split::all;
  if (text == "train") return Split::train;
  if (text == "test") return Split::test;
  throw InputError("unknown split '" + text + "' (expected all, train or test)");
}

const char* split_name(Split split) {
  switch (split) {
    case Split::all:
      return "all";
    case Split::train:
      return "train";
    case Split::test:
      return "test";
  }
  return "?";
}

namespace {

const char* const kFetchHint =
    "run scripts/fetch_mnist, or point --data at a directory holding the MNIST IDX files";

// `dir/name`, or `dir/name.gz` when only that exists.
std::filesystem::path find_mnist_file(const std::filesystem::path& dir, const std::string& name) {
  std::error_code ec;
  const std::filesystem::path raw = dir / name;
  if (std::filesystem::exists(raw, ec)) return raw;
  const std::filesystem::path gz = dir / (name + ".gz");
  if (std::filesystem::exists(gz, ec)) return gz;
  throw InputError(raw.string() + ": not found (nor " + gz.filename().string() + "); " +
                   kFetchHint);
}

// Appends the images of `digit` (all when empty) from one MNIST split to `out`, binarized.
void append_split(const std::filesystem::path& dir, const std::string& prefix,
                  std::optional<int> digit, Dataset& out) {
  const std::filesystem::path images_path = find_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const std::filesystem::path labels_path = find_mnist_file(dir, prefix + "-labels-idx1-ubyte");
  const IdxImages images = read_idx_images(images_path);
  const std::vector<uint8_t> labels = read_idx_labels(labels_path);

  if (images.rows != 28 || images.cols != 28) {
    fail(images_path, "images are " + std::to_string(images.rows) + "x" +
                          std::to_string(images.cols) + ", MNIST's are 28x28");
  }
  if (static_cast<int64_t>(labels.size()) != images.count) {
    fail(labels_path, "holds " + std::to_string(labels.size()) + " labels but " +
                          images_path.filename().string() + " holds " +
                          std::to_string(images.count) + " images");
  }
  const auto bad_label =
      std::find_if(labels.begin(), labels.end(), [](uint8_t l) { return l > 9; });
  if (bad_label != labels.end()) {
    fail(labels_path, "label " + std::to_string(*bad_label) + " at index " +
                          std::to_string(bad_label - labels.begin()) + " is not a digit 0..9");
  }

  out.width = images.cols;
  out.height = images.rows;
  const size_t cols = static_cast<size_t>(images.rows) * images.cols;
  const auto keep = [&](uint8_t label) { return !digit || label == *digit; };
  const auto kept = static_cast<size_t>(std::count_if(labels.begin(), labels.end(), keep));
  out.pixels.reserve(out.pixels.size() + kept * cols);
  out.labels.reserve(out.labels.size() + kept);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!keep(labels[i])) continue;
    const uint8_t* src = images.pixels.data() + i * cols;
    // pixel > 127.5 on integer pixels.
    std::transform(src, src + cols, std::back_inserter(out.pixels),
                   [](uint8_t pixel) -> uint8_t { return pixel >= 128; });
    out.labels.push_back(labels[i]);
    ++out.rows;
  }
}

}  // namespace

Dataset load_mnist(const std::filesystem::path& dir, std::optional<int> digit, Split split) {
  if (digit && (*digit < 0 || *digit > 9)) {
    throw InputError("digit " + std::to_string(*digit) + " is not in 0..9");
  }
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(dir, ec);
  if (std::filesystem::exists(status) && !std::filesystem::is_directory(status)) {
    throw InputError(dir.string() +
                     ": not a directory; point --data at the directory that holds "
                     "MNIST's four IDX files");
  }
  if (!std::filesystem::is_directory(status)) {
    throw InputError(dir.string() + ": no such directory; " + kFetchHint);
  }
  Dataset data;
  if (split != Split::test) append_split(dir, "train", digit, data);
  if (split != Split::train) append_split(dir, "t10k", digit, data);
  return data;
}

std::vector<double> pixel_means(const Dataset& data) {
  if (data.rows == 0) throw InputError("pixel_means: the dataset holds no images");
  std::vector<int64_t> counts(data.cols(), 0);
  for (int64_t r = 0; r < data.rows; ++r) {
    const uint8_t* row = data.row(r);
    for (int p = 0; p < data.cols(); ++p) counts[p] += row[p];
  }
  std::vector<double> means(data.cols());
  for (int p = 0; p < data.cols(); ++p) {
    means[p] = static_cast<double>(counts[p]) / static_cast<double>(data.rows);
  }
  return means;
}

}  // namespace rbm
