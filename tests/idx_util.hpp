// Hand-made IDX files for tests that feed the readers broken or tiny data (test_idx.cpp,
// test_bad_input.cpp): big-endian headers and gzip in memory.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rbm::test {

inline std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// An IDX file: magic, big-endian dimensions, then `data`.
inline std::string idx_file(uint32_t magic, const std::vector<uint32_t>& dims,
                            const std::string& data) {
  std::string file = be32(magic);
  for (const uint32_t d : dims) file += be32(d);
  return file + data;
}

// `raw` as a gzip stream, as MNIST's .gz files are.
inline std::string gzip(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(
      deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
      Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(raw.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace rbm::test
