// SHA-256 (FIPS 180-4), for the data and parameter checksums recorded in run.json.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rbm {

// Incremental hashing: update() any number of times, then digest(); digest() does not change
// the state, so more data may follow it.
class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  void update(std::string_view bytes);
  std::array<uint8_t, 32> digest() const;
  std::string hex_digest() const;  // 64 lowercase hex digits

 private:
  void compress(const uint8_t* block);  // one 64-byte block into state_

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> block_{};  // the pending partial block
  size_t block_len_ = 0;
  uint64_t total_len_ = 0;  // bytes hashed so far
};

std::string sha256_hex(std::span<const uint8_t> bytes);
std::string sha256_hex(std::string_view bytes);

// A SHA-256 as recorded (run.json), in the lower case sha256_hex writes: hex digits in upper case
// (an edited record) name the same digest. Other characters are kept as they are.
std::string lowercase_hex(std::string recorded);
// True when `recorded` is 64 hex digits, of either case.
bool is_sha256_hex(std::string_view recorded);

}  // namespace rbm
