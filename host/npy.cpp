// The .npy format (numpy/lib/format.py): magic "\x93NUMPY", version, header length, a Python dict
// literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with spaces and a final
// '\n' so that the data start at a multiple of 64 bytes, then the raw data.
#include "host/npy.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "host/atomic_file.hpp"
#include "host/errors.hpp"

namespace rbm {
namespace {

static_assert(std::endian::native == std::endian::little, "'<f4' data are copied as they are");

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kAlign = 64;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw InputError(path.string() + ": " + what);
}

// prod(shape) * elem_size, or nothing when a dimension is negative or the product overflows.
std::optional<uint64_t> byte_count(const std::vector<int64_t>& shape, size_t elem_size) {
  uint64_t n = elem_size;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(dim), &n)) return {};
  }
  return n;
}

// The header (magic, version, length, dict) of an array of `count` values of elem_size bytes.
std::string npy_header(const std::filesystem::path& path, std::string_view descr, size_t count,
                       size_t elem_size, const std::vector<int64_t>& shape) {
  if (shape.empty() || shape.size() > 2) {
    fail(path, "cannot write shape " + npy_shape_text(shape) + ": only 1-D and 2-D arrays");
  }
  const std::optional<uint64_t> bytes = byte_count(shape, elem_size);
  if (!bytes || *bytes != count * elem_size) {
    fail(path, "cannot write shape " + npy_shape_text(shape) + " from " + std::to_string(count) +
                   " values");
  }
  std::string header = "{'descr': '" + std::string(descr) +
                       "', 'fortran_order': False, 'shape': " + npy_shape_text(shape) + ", }";
  // numpy >= 1.24 leaves room for the first dimension to grow to 21 digits; doing the same makes
  // our files byte-identical to numpy.save's.
  header.append(21 - std::min<size_t>(21, std::to_string(shape[0]).size()), ' ');
  // magic (6) + version (2) + header length (2) + header + padding + '\n' = k * 64.
  const size_t unpadded = kMagic.size() + 4 + header.size() + 1;
  header.append((kAlign - unpadded % kAlign) % kAlign, ' ');
  header += '\n';

  std::string file(kMagic);
  file += '\x01';
  file += '\x00';
  file += static_cast<char>(header.size() & 0xff);
  file += static_cast<char>(header.size() >> 8);
  file += header;
  return file;
}

std::string encode_npy_bytes(const std::filesystem::path& path, std::string_view descr,
                             const void* data, size_t count, size_t elem_size,
                             const std::vector<int64_t>& shape) {
  std::string file = npy_header(path, descr, count, elem_size, shape);
  file.append(static_cast<const char*>(data), count * elem_size);
  return file;
}

// A recursive-descent reader for the header dict, which is a Python literal: single- or
// double-quoted strings, True/False, and a tuple of integers.
class HeaderParser {
 public:
  HeaderParser(const std::filesystem::path& path, std::string_view text)
      : path_(path), text_(text) {}

  struct Header {
    std::string descr;
    bool fortran_order = false;
    std::vector<int64_t> shape;
  };

  Header parse() {
    Header header;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (!accept('}')) {
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        header.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        header.fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        header.shape = tuple();
        have_shape = true;
      } else {
        error("unexpected key '" + key + "'");
      }
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) error("text after the dict");
    if (!have_descr || !have_order || !have_shape) {
      error("the dict lacks one of 'descr', 'fortran_order', 'shape'");
    }
    return header;
  }

 private:
  // The message quotes the header on one line: control bytes escaped, trailing padding and
  // anything past 200 bytes left out.
  [[noreturn]] void error(const std::string& what) {
    std::string_view header = text_.substr(0, 200);
    while (!header.empty() && std::isspace(static_cast<unsigned char>(header.back()))) {
      header.remove_suffix(1);
    }
    std::string quoted;
    for (const char c : header) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte >= 0x20 && byte < 0x7f) {
        quoted += c;
      } else {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
        quoted += escaped;
      }
    }
    if (text_.size() > 200) quoted += "...";
    fail(path_, "bad .npy header: " + what + " in " + quoted);
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) error(std::string("expected '") + c + "'");
  }
  bool accept_word(std::string_view word) {
    skip_space();
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  std::string string_literal() {
    skip_space();
    const char quote = pos_ < text_.size() ? text_[pos_] : '\0';
    if (quote != '\'' && quote != '"') error("expected a string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) error("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }
  bool boolean() {
    if (accept_word("True")) return true;
    if (accept_word("False")) return false;
    error("expected True or False");
  }
  int64_t integer() {
    skip_space();
    int64_t value = 0;
    const size_t start = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      if (__builtin_mul_overflow(value, int64_t{10}, &value) ||
          __builtin_add_overflow(value, int64_t{text_[pos_] - '0'}, &value)) {
        error("dimension too large");
      }
      ++pos_;
    }
    if (pos_ == start) error("expected a dimension");
    // numpy 1.x on some platforms wrote Python 2 longs, "3L".
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
    return value;
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> values;
    expect('(');
    while (!accept(')')) {
      values.push_back(integer());
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return values;
  }

  const std::filesystem::path& path_;
  std::string_view text_;
  size_t pos_ = 0;
};

// A .npy file whose header has been checked against the expected dtype and the data length.
struct CheckedNpy {
  std::vector<int64_t> shape;
  std::string file;
  size_t data_offset = 0;  // the data are file[data_offset...]
};

CheckedNpy check_npy(const std::filesystem::path& path, std::string file_bytes,
                     std::string_view descr, size_t elem_size) {
  CheckedNpy npy;
  npy.file = std::move(file_bytes);
  const std::string_view file = npy.file;
  if (file.size() < kMagic.size() + 2 || file.substr(0, kMagic.size()) != kMagic) {
    fail(path, "not a .npy file (bad magic)");
  }
  const auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<uint8_t>(file[i])); };
  const size_t major = byte(6), minor = byte(7);
  // 1.0 has a 2-byte header length, 2.0 a 4-byte one; 3.0 (utf-8 headers) is not needed here.
  if ((major != 1 && major != 2) || minor != 0) {
    fail(path, ".npy version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (expected 1.0 or 2.0)");
  }
  const size_t len_size = major == 1 ? 2 : 4;
  if (file.size() < 8 + len_size) fail(path, "truncated .npy header");
  size_t header_len = 0;
  for (size_t i = 0; i < len_size; ++i) header_len |= byte(8 + i) << (8 * i);
  npy.data_offset = 8 + len_size + header_len;
  if (file.size() < npy.data_offset) {
    fail(path, "truncated .npy header: it claims " + std::to_string(header_len) +
                   " bytes but the file holds " + std::to_string(file.size() - 8 - len_size));
  }

  const auto header = HeaderParser(path, file.substr(8 + len_size, header_len)).parse();
  if (header.descr != descr) {
    fail(path, "dtype '" + header.descr + "', expected '" + std::string(descr) + "'");
  }
  if (header.fortran_order) fail(path, "Fortran order; only C order is supported");
  if (header.shape.empty() || header.shape.size() > 2) {
    fail(path, "shape " + npy_shape_text(header.shape) + ": only 1-D and 2-D arrays are supported");
  }
  const std::optional<uint64_t> expected = byte_count(header.shape, elem_size);
  const size_t actual = file.size() - npy.data_offset;
  if (!expected) fail(path, "absurd shape " + npy_shape_text(header.shape));
  if (*expected > actual) {
    fail(path, "truncated data: shape " + npy_shape_text(header.shape) + " needs " +
                   std::to_string(*expected) + " bytes but the file holds " +
                   std::to_string(actual));
  }
  if (*expected < actual) {
    fail(path, "trailing data: shape " + npy_shape_text(header.shape) + " needs " +
                   std::to_string(*expected) + " bytes but the file holds " +
                   std::to_string(actual));
  }
  npy.shape = header.shape;
  return npy;
}

template <class T>
NpyArrayOf<T> parse_npy_as(const std::filesystem::path& path, std::string bytes,
                           std::string_view descr) {
  const CheckedNpy npy = check_npy(path, std::move(bytes), descr, sizeof(T));
  NpyArrayOf<T> array;
  array.shape = npy.shape;
  array.data.resize((npy.file.size() - npy.data_offset) / sizeof(T));
  // An empty array's data() may be null, which memcpy may not be given even for 0 bytes.
  if (!array.data.empty()) {
    std::memcpy(array.data.data(), npy.file.data() + npy.data_offset,
                array.data.size() * sizeof(T));
  }
  return array;
}

}  // namespace

std::string npy_shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

std::string encode_npy(const std::filesystem::path& path, const std::vector<float>& data,
                       const std::vector<int64_t>& shape) {
  return encode_npy_bytes(path, "<f4", data.data(), data.size(), sizeof(float), shape);
}

void write_npy(const std::filesystem::path& path, const std::vector<float>& data,
               std::vector<int64_t> shape) {
  write_file_atomic(path, encode_npy(path, data, shape));
}

std::string encode_npy_u8(const std::filesystem::path& path, const std::vector<uint8_t>& data,
                          const std::vector<int64_t>& shape) {
  return encode_npy_bytes(path, "|u1", data.data(), data.size(), 1, shape);
}

void write_npy_u8(const std::filesystem::path& path, const std::vector<uint8_t>& data,
                  std::vector<int64_t> shape) {
  write_file_atomic(path, encode_npy_u8(path, data, shape));
}

NpyStatesFile::Layout NpyStatesFile::layout_of(const std::filesystem::path& path, int64_t rows,
                                               int64_t cols, StatesFormat format) {
  if (rows < 0 || cols <= 0) fail(path, "cannot write shape " + npy_shape_text({rows, cols}));
  const bool packed = format == StatesFormat::packed;
  // numpy.packbits(states, axis=1) packs 8 units to a byte.
  const int64_t out_cols = packed ? (cols + 7) / 8 : cols;
  const size_t out_size = packed ? 1 : sizeof(float);
  return {npy_header(path, packed ? "|u1" : "<f4", static_cast<size_t>(rows * out_cols), out_size,
                     {rows, out_cols}),
          static_cast<size_t>(out_cols) * out_size};
}

uint64_t NpyStatesFile::file_bytes(int64_t rows, int64_t cols, StatesFormat format) {
  const Layout file = layout_of("states", rows, cols, format);
  return file.header.size() + static_cast<uint64_t>(rows) * file.row_bytes;
}

// The shape is checked (by layout_of()) before the temporary file is made.
NpyStatesFile::NpyStatesFile(const std::filesystem::path& path, int64_t rows, int64_t cols,
                             StatesFormat format)
    : NpyStatesFile(path, rows, cols, format, layout_of(path, rows, cols, format)) {}

NpyStatesFile::NpyStatesFile(const std::filesystem::path& path, int64_t rows, int64_t cols,
                             StatesFormat format, Layout layout)
    : path_(path),
      rows_(rows),
      cols_(cols),
      packed_(format == StatesFormat::packed),
      row_bytes_(layout.row_bytes),
      file_(path) {
  file_.append(layout.header);
}

void NpyStatesFile::append_rows(std::span<const uint8_t> states) {
  const auto cols = static_cast<size_t>(cols_);
  if (states.size() % cols != 0 ||
      static_cast<int64_t>(states.size() / cols) > rows_ - rows_written_) {
    fail(path_, "cannot write shape " + npy_shape_text({rows_, cols_}) + ": " +
                    std::to_string(states.size()) + " values after " +
                    std::to_string(rows_written_) + " rows");
  }
  // Encoded and written up to 4 MiB of the file at a time.
  const size_t piece_rows = std::max<size_t>(1, (size_t{1} << 22) / row_bytes_);
  while (!states.empty()) {
    const size_t n = std::min(piece_rows, states.size() / cols);
    piece_.resize(n * row_bytes_);
    if (packed_) {
      // Unit i in byte i / 8, bit 7 - i % 8; the last byte's unused low bits are 0. Each byte
      // from its 8 units without a branch: random states defeat a branch per unit (4 ns each).
      // Every byte of a row is written whole, the last one's unused bits as 0.
      for (size_t r = 0; r < n; ++r) {
        auto* row = reinterpret_cast<uint8_t*>(piece_.data()) + r * row_bytes_;
        const uint8_t* units = states.data() + r * cols;
        for (size_t i = 0; i < cols; i += 8) {
          const size_t count = std::min<size_t>(8, cols - i);
          unsigned bits = 0;
          for (size_t j = 0; j < count; ++j) {
            bits |= static_cast<unsigned>(units[i + j] != 0) << (7 - j);
          }
          row[i / 8] = static_cast<uint8_t>(bits);
        }
      }
    } else {
      for (size_t k = 0; k < n * cols; ++k) {
        const float v = states[k] ? 1.0f : 0.0f;
        std::memcpy(piece_.data() + k * sizeof(float), &v, sizeof(float));
      }
    }
    file_.append(piece_);
    states = states.subspan(n * cols);
    rows_written_ += static_cast<int64_t>(n);
  }
}

StagedFile NpyStatesFile::finish() {
  if (rows_written_ != rows_) {
    fail(path_, "cannot write shape " + npy_shape_text({rows_, cols_}) + ": only " +
                    std::to_string(rows_written_) + " rows");
  }
  file_.finish();
  return std::move(file_);
}

NpyArray parse_npy(const std::filesystem::path& path, std::string bytes) {
  return parse_npy_as<float>(path, std::move(bytes), "<f4");
}

NpyArrayU8 parse_npy_u8(const std::filesystem::path& path, std::string bytes) {
  return parse_npy_as<uint8_t>(path, std::move(bytes), "|u1");
}

NpyArray read_npy(const std::filesystem::path& path) { return parse_npy(path, read_file(path)); }

NpyArrayU8 read_npy_u8(const std::filesystem::path& path) {
  return parse_npy_u8(path, read_file(path));
}

}  // namespace rbm
