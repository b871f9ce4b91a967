// Progress display (see progress.hpp).
#include "host/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace rbm {

Progress::Progress(std::string what, int64_t total, int64_t first)
    : what_(std::move(what)),
      total_(total),
      first_(first),
      interactive_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, const std::string& extra) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0.0 ? static_cast<double>(done - first_) / elapsed : 0.0;
  const double eta = rate > 0.0 ? static_cast<double>(total_ - done) / rate : 0.0;
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1;
  if (interactive_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %3.0f%% %.3g it/s ETA %.1fs %s\033[K", what_.c_str(),
                 bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                 100.0 * fraction, rate, eta, extra.c_str());
  } else {
    std::fprintf(stderr, "%s %lld/%lld (%.0f%%) %.3g it/s %s\n", what_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), 100.0 * fraction,
                 rate, extra.c_str());
  }
  std::fflush(stderr);
}

void PieceSizer::took(int64_t count, double seconds) {
  if (seconds <= 0.0) return;
  piece_ = std::clamp<int64_t>(
      static_cast<int64_t>(static_cast<double>(count) * seconds_ / seconds), 1, 2 * piece_);
}

void Progress::finish() {
  if (interactive_) std::fputc('\n', stderr);
}

}  // namespace rbm
