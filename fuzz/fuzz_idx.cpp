// libFuzzer target: any bytes as an IDX images file and as an IDX labels file (raw or gzip). The
// reader must answer with the parsed file or rbm::InputError; anything else (another exception,
// a sanitizer report, a crash, a hang, memory beyond the bound on decompressed size) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "host/errors.hpp"
#include "host/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const rbm::IdxImages images = rbm::parse_idx_images("input", bytes);
    // What the reader promises: count images of rows x cols bytes.
    if (images.pixels.size() != static_cast<size_t>(images.count) * images.rows * images.cols) {
      __builtin_trap();
    }
  } catch (const rbm::InputError&) {
  }
  try {
    (void)rbm::parse_idx_labels("input", bytes);
  } catch (const rbm::InputError&) {
  }
  return 0;
}
