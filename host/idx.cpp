// Reading IDX files (raw or gzip) and, on top of them, the MNIST dataset of host/dataset.hpp.
#include "host/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/dataset.hpp"
#include "host/errors.hpp"

namespace rbm {
namespace {

// A decompressed IDX file larger than this is not one we want (MNIST's largest is 47 MB); the
// bound turns a gzip bomb into a message rather than minutes of inflating.
constexpr uint64_t kMaxDecompressed = uint64_t{1} << 30;

// The piece of a file read at a time: large enough that read(2) and inflate's calls cost nothing,
// small enough to stay in cache. Reading whole files into memory instead cost 0.5 s of page faults
// on the 47 MB training images on a virtual machine, 20 times the time to read them in pieces.
constexpr size_t kPieceBytes = size_t{1} << 18;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw InputError(path.string() + ": " + what);
}

// The bytes of an IDX file in order, from the file (a piece at a time) or from a buffer, inflated
// on the way when they are gzip (every member of a file of several, concatenated), so that only a
// piece and what the caller keeps are ever in memory.
class IdxByteStream {
 public:
  explicit IdxByteStream(const std::filesystem::path& path)
      : name_(path), file_(std::in_place, path), piece_(kPieceBytes) {
    source_length_ = file_->size_when_opened();
    start();
  }
  IdxByteStream(const std::filesystem::path& name, std::string_view bytes)
      : name_(name), memory_(bytes), source_length_(bytes.size()) {
    start();
  }
  IdxByteStream(const IdxByteStream&) = delete;
  IdxByteStream& operator=(const IdxByteStream&) = delete;
  ~IdxByteStream() {
    if (gzipped_) inflateEnd(&zs_);
  }

  bool gzipped() const { return gzipped_; }
  const std::filesystem::path& name() const { return name_; }

  // The stream's length without reading it, where the bytes are not compressed: the file's size
  // when it was opened, or the buffer's.
  std::optional<uint64_t> known_length() const {
    if (gzipped_) return std::nullopt;
    return source_length_;
  }

  // Reads up to n bytes into out and returns how many: fewer than n only at the end.
  size_t read(uint8_t* out, size_t n) {
    size_t have = 0;
    while (have < n) {
      // zlib may hold output for a full buffer with no input left; inflate again before reading.
      if (pending_.empty() && !output_held_ && !next_piece()) {
        // Every member of a gzip file ends with its trailer; the input ended inside one.
        if (gzipped_ && in_member_) fail(name_, "truncated gzip data");
        break;
      }
      have += gzipped_ ? inflate_into(out + have, n - have) : copy_into(out + have, n - have);
    }
    return have;
  }

 private:
  void start() {
    if (!next_piece()) return;  // empty
    gzipped_ = pending_.size() >= 2 && pending_[0] == 0x1f && pending_[1] == 0x8b;
    if (!gzipped_) return;
    // 16 + MAX_WBITS: expect a gzip header and trailer rather than a zlib one.
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) {
      gzipped_ = false;
      fail(name_, "cannot initialise zlib");
    }
  }

  // The next piece of the source in pending_; false at its end.
  bool next_piece() {
    if (file_) {
      pending_ = {piece_.data(), file_->read(piece_.data(), piece_.size())};
    } else {
      pending_ = {reinterpret_cast<const uint8_t*>(memory_.data()), memory_.size()};
      memory_ = {};
    }
    return !pending_.empty();
  }

  size_t copy_into(uint8_t* out, size_t n) {
    const size_t k = std::min(n, pending_.size());
    std::copy_n(pending_.begin(), k, out);
    pending_ = pending_.subspan(k);
    return k;
  }

  // Inflates pending input (or output zlib holds) into out (n > 0); returns the bytes written.
  size_t inflate_into(uint8_t* out, size_t n) {
    // Both counts fit zlib's 32-bit ones: they are capped at a piece.
    const uInt given = static_cast<uInt>(std::min(pending_.size(), kPieceBytes));
    const uInt asked = static_cast<uInt>(std::min(n, kPieceBytes));
    zs_.next_in = const_cast<Bytef*>(pending_.data());
    zs_.avail_in = given;
    zs_.next_out = out;
    zs_.avail_out = asked;
    if (!in_member_ && (in_zero_padding_ || pending_.front() == 0)) {
      // Zero bytes after the last member (padding to a tape or disk block): gzip -t accepts them,
      // and so does this; anything after them is not another member.
      if (std::find_if(pending_.begin(), pending_.end(), [](uint8_t b) { return b != 0; }) !=
          pending_.end()) {
        fail(name_,
             "bytes after the zero padding that ends the gzip data (gzip -t calls them trailing "
             "garbage)");
      }
      in_zero_padding_ = true;
      pending_ = {};
      return 0;
    }
    if (!in_member_) {
      in_member_ = true;  // bytes after a member's end: another member follows
      inflateReset(&zs_);
      member_inflated_ = 0;
    }
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    pending_ = pending_.subspan(given - zs_.avail_in);
    output_held_ = rc == Z_OK && zs_.avail_out == 0;
    const size_t written = asked - zs_.avail_out;
    inflated_ += written;
    member_inflated_ += written;
    if (inflated_ > kMaxDecompressed) {
      fail(name_, "gzip data decompress to more than " + std::to_string(kMaxDecompressed) +
                      " bytes, too large for an IDX file");
    }
    if (rc == Z_STREAM_END) {
      in_member_ = false;
      ++members_ended_;
    }
    if (rc == Z_DATA_ERROR && members_ended_ > 0 && member_inflated_ == 0) {
      fail(name_,
           "bytes after the end of the gzip data that are not another gzip member (gzip -t calls "
           "them trailing garbage)");
    }
    // Z_BUF_ERROR: no progress for want of input; the next piece (or the end) decides.
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      fail(name_, std::string("bad gzip data: ") + (zs_.msg ? zs_.msg : "zlib error"));
    }
    return written;
  }

  std::filesystem::path name_;
  std::optional<FileReader> file_;    // the source: a file, or else memory_
  std::string_view memory_;           // what next_piece has not yet given of the buffer
  uint64_t source_length_ = 0;        // the file's size when opened, or the buffer's
  std::vector<uint8_t> piece_;        // (kPieceBytes): the file's current piece
  std::span<const uint8_t> pending_;  // what is left of the current piece or of memory_
  bool gzipped_ = false;
  z_stream zs_{};
  bool in_member_ = true;         // inside a gzip member: its end has not been seen
  bool in_zero_padding_ = false;  // in zero bytes after the last member
  bool output_held_ = false;      // the last inflate filled its output: zlib may hold more
  int64_t members_ended_ = 0;     // gzip members read to their end
  uint64_t member_inflated_ = 0;  // bytes the current member has given
  uint64_t inflated_ = 0;         // bytes inflated in all, against kMaxDecompressed
};

uint32_t load_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// An IDX file of unsigned bytes of a given rank, read in order: its header, checked on
// construction (magic, type, rank, a usable image size, and that the dimensions match the data
// length where the length is known without reading, an uncompressed file or buffer, or else stay
// within the bound on what a gzip file may inflate to), then its data, by read_data, and finish,
// which checks that nothing follows them. Nothing is allocated for the data here.
class IdxReader {
 public:
  IdxReader(int rank, const std::filesystem::path& path) : stream_(path), rank_(rank) {
    read_header();
  }
  IdxReader(int rank, const std::filesystem::path& name, std::string_view bytes)
      : stream_(name, bytes), rank_(rank) {
    read_header();
  }

  const std::vector<uint32_t>& dims() const { return dims_; }
  uint64_t data_length() const { return data_length_; }
  // Whether the data length was checked against the file's on construction (uncompressed), so
  // that it is safe to allocate for it.
  bool length_checked() const { return length_checked_; }

  // Reads the next n bytes of data (at most what remains) into out; throws InputError
  // ("truncated") when the file ends first.
  void read_data(uint8_t* out, size_t n) {
    if (n > data_length_ - data_read_) throw std::logic_error("IdxReader: read past the data");
    const size_t got = stream_.read(out, n);
    data_read_ += got;
    if (got < n) wrong_length(data_read_);
  }

  // Once all the data are read: throws InputError ("trailing data") if the file holds more.
  void finish() {
    if (data_read_ != data_length_) throw std::logic_error("IdxReader: data left unread");
    std::vector<uint8_t> scratch(kPieceBytes);
    uint64_t extra = 0;
    while (const size_t got = stream_.read(scratch.data(), scratch.size())) extra += got;
    if (extra != 0) wrong_length(data_length_ + extra);
  }

  // Reads the rest of the data without keeping it, then finishes: a compressed file's header is
  // checked against what it holds only by reading it.
  void skip_to_end() {
    std::vector<uint8_t> scratch(kPieceBytes);
    while (data_read_ < data_length_) {
      read_data(scratch.data(), std::min<uint64_t>(scratch.size(), data_length_ - data_read_));
    }
    finish();
  }

 private:
  // "1 byte", "2 bytes": the messages count what a file holds, which may be one.
  static std::string counted(uint64_t n, const char* noun) {
    return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
  }
  std::string holds() const {
    return stream_.gzipped() ? "the decompressed file holds " : "the file holds ";
  }

  void read_header() {
    const size_t header_length = 4 + 4 * static_cast<size_t>(rank_);
    uint8_t header[4 + 4 * 3];
    if (rank_ != 1 && rank_ != 3) throw std::logic_error("IdxReader: rank 1 (labels) or 3");
    const size_t got = stream_.read(header, 4);
    if (got < 4) {
      fail(stream_.name(), "truncated header: " + holds() + counted(got, "byte") +
                               ", an IDX header needs " + std::to_string(header_length));
    }
    const uint32_t magic = load_be32(header);
    const uint32_t expected_magic = 0x0800u | static_cast<uint32_t>(rank_);
    if (magic >> 16 != 0) {
      char text[80];
      std::snprintf(text, sizeof text, "not an IDX file: bad magic 0x%08x (expected 0x%08x)", magic,
                    expected_magic);
      std::string message = text;
      if (stream_.gzipped() && magic >> 16 == 0x1f8b) {  // gzip's own magic, once inflated
        message += "; the inflated data are gzip again: compressed twice? (gunzip it once)";
      }
      fail(stream_.name(), message);
    }
    if ((magic >> 8 & 0xff) != 0x08) {
      char text[80];
      std::snprintf(text, sizeof text, "IDX data type 0x%02x, expected 0x08 (unsigned byte)",
                    magic >> 8 & 0xff);
      fail(stream_.name(), text);
    }
    if (static_cast<int>(magic & 0xff) != rank_) {
      fail(stream_.name(), "IDX rank " + std::to_string(magic & 0xff) + ", expected " +
                               std::to_string(rank_) + (rank_ == 3 ? " (images)" : " (labels)"));
    }
    const size_t got_dims = stream_.read(header + 4, header_length - 4);
    if (got_dims < header_length - 4) {
      fail(stream_.name(), "truncated header: " + holds() + counted(4 + got_dims, "byte") +
                               ", an IDX header of rank " + std::to_string(rank_) + " needs " +
                               std::to_string(header_length));
    }

    std::string shape;
    for (int i = 0; i < rank_; ++i) {
      dims_.push_back(load_be32(header + 4 + 4 * i));
      shape += (i ? " x " : "") + std::to_string(dims_.back());
    }
    // The data size, checked for overflow before anything is compared or allocated.
    data_length_ = 1;
    for (const uint32_t dim : dims_) {
      if (__builtin_mul_overflow(data_length_, uint64_t{dim}, &data_length_)) {
        fail(stream_.name(), "absurd dimensions " + shape + ": their product overflows 64 bits");
      }
    }
    if (rank_ == 3 && (dims_[1] == 0 || dims_[2] == 0 || dims_[1] > INT_MAX / dims_[2])) {
      fail(stream_.name(),
           "unusable image size " + std::to_string(dims_[1]) + "x" + std::to_string(dims_[2]));
    }
    described_ = rank_ == 3 ? counted(dims_[0], "image") + " of " + std::to_string(dims_[1]) + "x" +
                                  std::to_string(dims_[2])
                            : counted(dims_[0], "label");
    header_length_ = header_length;
    const std::optional<uint64_t> length = stream_.known_length();
    // A size below the header's, which was just read in full, is stale (a file that grew since it
    // was opened, or one whose size stat(2) does not give, as procfs's): not a length to check.
    if (length && *length >= header_length) {
      if (*length - header_length != data_length_) wrong_length(*length - header_length);
      length_checked_ = true;
    } else if (data_length_ > kMaxDecompressed - header_length) {
      // Compressed: the length is known only at the end. A header that promises more than a
      // gzip file may inflate to is refused now, before a caller allocates for it.
      fail(stream_.name(), "header says " + described_ + " = " + counted(data_length_, "byte") +
                               ", more than the " + std::to_string(kMaxDecompressed) +
                               " that an IDX file read as it streams may hold");
    }
  }

  [[noreturn]] void wrong_length(uint64_t body_length) const {
    fail(stream_.name(), std::string(body_length < data_length_ ? "truncated" : "trailing data") +
                             ": header says " + described_ + " = " + counted(data_length_, "byte") +
                             " but " + holds() + std::to_string(body_length) + " after the " +
                             std::to_string(header_length_) + "-byte header");
  }

  IdxByteStream stream_;
  int rank_;
  std::vector<uint32_t> dims_;
  uint64_t data_length_ = 0;
  uint64_t data_read_ = 0;
  size_t header_length_ = 0;
  bool length_checked_ = false;
  std::string described_;
};

// All the data of an IDX file, read in pieces: the vector grows with what the file holds, never
// to a length only the header claims.
std::vector<uint8_t> read_all_data(IdxReader& idx) {
  std::vector<uint8_t> data;
  while (data.size() < idx.data_length()) {
    const size_t have = data.size();
    data.resize(have + std::min<uint64_t>(kPieceBytes, idx.data_length() - have));
    idx.read_data(data.data() + have, data.size() - have);
  }
  idx.finish();
  return data;
}

IdxImages read_images(IdxReader& idx) {
  IdxImages images;
  images.count = idx.dims()[0];
  images.rows = static_cast<int>(idx.dims()[1]);
  images.cols = static_cast<int>(idx.dims()[2]);
  images.pixels = read_all_data(idx);
  return images;
}

}  // namespace

IdxImages parse_idx_images(const std::filesystem::path& path, std::string bytes) {
  IdxReader idx(3, path, std::string_view(bytes));
  return read_images(idx);
}

std::vector<uint8_t> parse_idx_labels(const std::filesystem::path& path, std::string bytes) {
  IdxReader idx(1, path, std::string_view(bytes));
  return read_all_data(idx);
}

IdxImages read_idx_images(const std::filesystem::path& path) {
  IdxReader idx(3, path);
  return read_images(idx);
}

std::vector<uint8_t> read_idx_labels(const std::filesystem::path& path) {
  IdxReader idx(1, path);
  return read_all_data(idx);
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

// The prefixes of a split's files, in the order they are loaded: train, t10k, or both.
std::vector<std::string> split_prefixes(Split split) {
  std::vector<std::string> prefixes;
  if (split != Split::test) prefixes.push_back("train");
  if (split != Split::train) prefixes.push_back("t10k");
  return prefixes;
}

// A split's two files: its images and its labels.
std::array<std::string, 2> split_file_names(const std::string& prefix) {
  return {prefix + "-images-idx3-ubyte", prefix + "-labels-idx1-ubyte"};
}

// Where a file of that name may be, in the order looked at: raw, then gzipped.
std::array<std::filesystem::path, 2> mnist_file_paths(const std::filesystem::path& dir,
                                                      const std::string& name) {
  return {dir / name, dir / (name + ".gz")};
}

// `dir/name`, or `dir/name.gz` when only that exists. A symbolic link that leads nowhere (its
// target missing, or a loop) is named as such rather than as a missing file.
std::filesystem::path find_mnist_file(const std::filesystem::path& dir, const std::string& name) {
  const auto [raw, gz] = mnist_file_paths(dir, name);
  for (const std::filesystem::path& path : {raw, gz}) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return path;
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(path, ec))) {
      throw InputError(path.string() +
                       ": a symbolic link that leads to no file (its target is missing, or the "
                       "links form a loop)");
    }
  }
  throw InputError(raw.string() + ": not found (nor " + gz.filename().string() + "); " +
                   kFetchHint);
}

// Appends the images of `digit` (all when empty) from one MNIST split to `out`, binarized. The
// images are read a piece at a time and only the kept ones are stored.
void append_split(const std::filesystem::path& dir, const std::string& prefix,
                  std::optional<int> digit, Dataset& out) {
  const auto [images_name, labels_name] = split_file_names(prefix);
  const std::filesystem::path images_path = find_mnist_file(dir, images_name);
  const std::filesystem::path labels_path = find_mnist_file(dir, labels_name);
  IdxReader images(3, images_path);  // its header and, uncompressed, its length checked here
  const uint32_t count = images.dims()[0];
  const uint32_t rows = images.dims()[1];
  const uint32_t cols = images.dims()[2];
  if (rows != 28 || cols != 28) {
    fail(images_path,
         "images are " + std::to_string(rows) + "x" + std::to_string(cols) + ", MNIST's are 28x28");
  }
  IdxReader labels_idx(1, labels_path);
  if (labels_idx.dims()[0] != count) {
    // A compressed file's count is checked against what it holds only by reading it: a header
    // that misstates it is the error to report, not the mismatch.
    if (!images.length_checked()) images.skip_to_end();
    if (!labels_idx.length_checked()) labels_idx.skip_to_end();
    fail(labels_path, "holds " + std::to_string(labels_idx.dims()[0]) + " labels but " +
                          images_path.filename().string() + " holds " + std::to_string(count) +
                          " images");
  }
  const std::vector<uint8_t> labels = read_all_data(labels_idx);
  const auto bad_label =
      std::find_if(labels.begin(), labels.end(), [](uint8_t l) { return l > 9; });
  if (bad_label != labels.end()) {
    fail(labels_path, "label " + std::to_string(*bad_label) + " at index " +
                          std::to_string(bad_label - labels.begin()) + " is not a digit 0..9");
  }

  out.width = static_cast<int>(cols);
  out.height = static_cast<int>(rows);
  const size_t pixels = size_t{rows} * cols;
  const auto keep = [&](uint8_t label) { return !digit || label == *digit; };
  const auto kept = static_cast<size_t>(std::count_if(labels.begin(), labels.end(), keep));
  if (images.length_checked()) {  // else the images may be fewer than the header says
    out.pixels.reserve(out.pixels.size() + kept * pixels);
    out.labels.reserve(out.labels.size() + kept);
  }
  const size_t images_per_piece = kPieceBytes / pixels;
  std::vector<uint8_t> piece(images_per_piece * pixels);  // (images_per_piece, 784)
  for (size_t first = 0; first < count; first += images_per_piece) {
    const size_t n = std::min<size_t>(images_per_piece, count - first);
    images.read_data(piece.data(), n * pixels);
    for (size_t i = 0; i < n; ++i) {
      if (!keep(labels[first + i])) continue;
      const uint8_t* src = piece.data() + i * pixels;
      const size_t at = out.pixels.size();
      out.pixels.resize(at + pixels);
      // pixel > 127.5 on integer pixels.
      for (size_t p = 0; p < pixels; ++p) out.pixels[at + p] = src[p] >= 128;
      out.labels.push_back(labels[first + i]);
      ++out.rows;
    }
  }
  images.finish();
}

}  // namespace

Dataset load_mnist(const std::filesystem::path& dir, std::optional<int> digit, Split split) {
  if (digit && (*digit < 0 || *digit > 9)) {
    throw InputError("digit " + std::to_string(*digit) + " is not in 0..9");
  }
  // A path that cannot be looked at (a symlink loop, a name too long, no permission) says why;
  // only a missing one points at the fetch script.
  const std::filesystem::file_status status = examined_status(dir, dir.string());
  if (std::filesystem::exists(status) && !std::filesystem::is_directory(status)) {
    throw InputError(dir.string() +
                     ": not a directory; point --data at the directory that holds "
                     "MNIST's four IDX files");
  }
  if (!std::filesystem::is_directory(status)) {
    throw InputError(dir.string() + ": no such directory; " + kFetchHint);
  }
  Dataset data;
  for (const std::string& prefix : split_prefixes(split)) append_split(dir, prefix, digit, data);
  return data;
}

std::optional<std::string> missing_mnist_file(const std::filesystem::path& dir, Split split) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return std::nullopt;
  for (const std::string& prefix : split_prefixes(split)) {
    for (const std::string& name : split_file_names(prefix)) {
      const bool there =
          std::ranges::any_of(mnist_file_paths(dir, name), [](const std::filesystem::path& path) {
            // Only a name that is not there is missing: one that cannot be looked at (no
            // permission) is there, for load_mnist to say what is wrong with it.
            std::error_code error;
            return std::filesystem::symlink_status(path, error).type() !=
                   std::filesystem::file_type::not_found;
          });
      if (!there) return name;
    }
  }
  return std::nullopt;
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
