// SHA-256 against the FIPS 180-4 / NIST example vectors, incremental against one-shot hashing, and
// the MNIST checksums kept in scripts/mnist.sha256.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/sha256.hpp"

namespace rbm {
namespace {

TEST(Sha256, EmptyString) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, Abc) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, TwoBlockMessage448Bits) {
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, Message896Bits) {
  EXPECT_EQ(
      sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
                 "nopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, MillionA) {
  const std::vector<uint8_t> a(1'000'000, 'a');
  EXPECT_EQ(sha256_hex(a), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalMatchesOneShotForEveryPaddingCase) {
  // Lengths around the 55/56/64-byte padding boundaries, fed in uneven pieces.
  std::string message;
  for (int len = 0; len <= 200; ++len) {
    Sha256 hash;
    for (size_t at = 0, piece = 1; at < message.size(); at += piece, piece = piece % 7 + 1) {
      hash.update(std::string_view(message).substr(at, piece));
    }
    ASSERT_EQ(hash.hex_digest(), sha256_hex(message)) << "length " << len;
    message += static_cast<char>('a' + len % 26);
  }
}

TEST(Sha256, DigestDoesNotEndTheHash) {
  Sha256 hash;
  hash.update("ab");
  EXPECT_EQ(hash.hex_digest(), sha256_hex("ab"));
  EXPECT_EQ(hash.hex_digest(), sha256_hex("ab"));
  hash.update("c");
  EXPECT_EQ(hash.hex_digest(), sha256_hex("abc"));
}

TEST(Sha256, MatchesSha256sumOnMnistLabels) {
  const std::filesystem::path labels =
      std::filesystem::path(RBM_MNIST_DIR) / "t10k-labels-idx1-ubyte";
  if (!std::filesystem::exists(labels))
    GTEST_SKIP() << "no " << labels << ": run scripts/fetch_mnist";
  EXPECT_EQ(sha256_hex(read_file(labels)),
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2");
}

}  // namespace
}  // namespace rbm
