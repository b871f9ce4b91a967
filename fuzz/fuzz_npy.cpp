// libFuzzer target: any bytes as a float32 and as a uint8 .npy file. The reader must answer with
// the parsed array or rbm::InputError; anything else is a bug. A parsed float32 array is written
// back and read again, which must give the same array.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "host/errors.hpp"
#include "host/npy.hpp"

namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const rbm::NpyArray array = rbm::parse_npy("input", bytes);
    if (array.shape.empty() || array.shape.size() > 2 ||
        static_cast<int64_t>(array.data.size()) != product(array.shape)) {
      __builtin_trap();
    }
    const rbm::NpyArray again =
        rbm::parse_npy("again", rbm::encode_npy("again", array.data, array.shape));
    if (again.shape != array.shape || again.data.size() != array.data.size() ||
        (!array.data.empty() && std::memcmp(again.data.data(), array.data.data(),
                                            array.data.size() * sizeof(float)) != 0)) {
      __builtin_trap();
    }
  } catch (const rbm::InputError&) {
  }
  try {
    (void)rbm::parse_npy_u8("input", bytes);
  } catch (const rbm::InputError&) {
  }
  return 0;
}
