// Our Philox4x32-10 against Random123's (Debian's librandom123-dev), the reference
// implementation by its authors, and against their published known-answer vectors.
#include <gtest/gtest.h>

#include <Random123/philox.h>

#include "kernels/philox.h"

namespace rbm {
namespace {

TEST(Philox, KnownAnswers) {
  struct Case {
    uint32_t ctr[4], key[2], want[4];
  };
  // Random123's kat_vectors for philox4x32 with 10 rounds.
  const Case cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Case& c : cases) {
    const PhiloxBlock r = philox4x32_10(c.ctr, c.key);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.word[w], c.want[w]) << "word " << w;
  }
}

TEST(Philox, MatchesRandom123) {
  r123::Philox4x32_R<10> reference;
  uint32_t x = 12345;
  const auto next = [&x] { return x = x * 1664525u + 1013904223u; };
  for (int n = 0; n < 10000; ++n) {
    const r123::Philox4x32::ctr_type ctr = {{next(), next(), next(), next()}};
    const r123::Philox4x32::key_type key = {{next(), next()}};
    const r123::Philox4x32::ctr_type want = reference(ctr, key);
    const uint32_t our_ctr[4] = {ctr.v[0], ctr.v[1], ctr.v[2], ctr.v[3]};
    const uint32_t our_key[2] = {key.v[0], key.v[1]};
    const PhiloxBlock got = philox4x32_10(our_ctr, our_key);
    for (int w = 0; w < 4; ++w) ASSERT_EQ(got.word[w], want.v[w]) << "case " << n;
  }
}

TEST(Philox, DrawNamingPutsStreamInHighWordsAndPhaseInSecond) {
  // philox_block(key, stream, phase, block) = philox((block, phase, stream_lo, stream_hi), key):
  // the layout curand_init(key, stream, 4 * ((phase << 32) | block)) produces on the device.
  const uint64_t key = 0x0123456789ABCDEFull, stream = 0xFEDCBA9876543210ull;
  const uint32_t ctr[4] = {17, 5, 0x76543210u, 0xFEDCBA98u};
  const uint32_t key_words[2] = {0x89ABCDEFu, 0x01234567u};
  const PhiloxBlock want = philox4x32_10(ctr, key_words);
  const PhiloxBlock got = philox_block(key, stream, 5, 17);
  for (int w = 0; w < 4; ++w) EXPECT_EQ(got.word[w], want.word[w]);
  EXPECT_EQ(philox_uniform(key, stream, 5, 4 * 17 + 2), uniform_from_bits(want.word[2]));
  EXPECT_EQ(philox_key(9, Purpose::sample), (uint64_t{2} << 32) | 9u);
}

}  // namespace
}  // namespace rbm
