// Progress display (see progress.hpp).
#include "host/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace rbm {

Progress::Progress(std::string what, int64_t total, int64_t first, std::string unit)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      total_(total),
      first_(first),
      interactive_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

namespace {

// Taken by whatever prints on stderr's progress line: Progress and print_own_line.
std::mutex g_line_mutex;
// An interactive bar is drawn on the current line of stderr, which no '\n' has ended yet.
bool g_bar_line_open = false;

// Ends the bar's line, if one is open; g_line_mutex held.
void end_bar_line() {
  if (!g_bar_line_open) return;
  std::fputc('\n', stderr);
  g_bar_line_open = false;
}

// A count as it reads best beside `scale` (the total it is counted toward): whole when scale is
// under ten million, else 3 significant digits (1.81e+06/1e+09, not 1806336/1e+09).
std::string count_text(int64_t n, int64_t scale) {
  char text[32];
  if (scale < 10'000'000) {
    std::snprintf(text, sizeof text, "%lld", static_cast<long long>(n));
  } else {
    std::snprintf(text, sizeof text, "%.3g", static_cast<double>(n));
  }
  return text;
}

// The terminal's width in columns (stderr's, else $COLUMNS, else 80).
size_t terminal_columns() {
  winsize size{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    const long n = std::strtol(columns, nullptr, 10);
    if (n > 0 && n < 10000) return static_cast<size_t>(n);
  }
  return 80;
}

}  // namespace

std::string bar_line(const std::string& what, double fraction, const std::string& numbers,
                     const std::string& extra, size_t columns) {
  // One line, cut to the terminal's width (the ETA comes before the rate and the metrics, which
  // the log lines without a terminal keep whole): a longer one wraps, and each redraw (\r returns
  // to the start of the last row only) would leave a copy of it on the screen. The bar gives way
  // first, down to none, so that the numbers and the rate's unit stay (at 80 columns a sampling's
  // "4.63e+05 chain-ste" had lost it: second exploratory tester).
  const size_t room = columns > 1 ? columns - 1 : 0;
  constexpr size_t kWidth = 20;
  const size_t bare = what.size() + 1 + numbers.size();  // "what numbers"
  const size_t width = bare + 3 + kWidth <= room ? kWidth : (room > bare + 3 ? room - bare - 3 : 0);
  std::string line = what + " ";
  if (width > 0) {
    const size_t filled =
        std::min(width, static_cast<size_t>(std::max(0.0, fraction) * static_cast<double>(width)));
    line += "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
  }
  line += numbers;
  if (!extra.empty()) line += " " + extra;
  line.resize(std::min(line.size(), room));
  return line;
}

void Progress::update(int64_t done, const std::string& extra) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // Before this process has done a unit (a resumed run's first line, its recomputed metrics row)
  // there is no rate yet: "-", not a 0 that reads as a stalled run, and no ETA.
  const double rate =
      done > first_ && elapsed > 0.0 ? static_cast<double>(done - first_) / elapsed : 0.0;
  char rate_text[32] = "-", eta_text[32] = "-";
  if (rate > 0.0) {
    std::snprintf(rate_text, sizeof rate_text, "%.3g", rate);
    std::snprintf(eta_text, sizeof eta_text, "%.1fs", static_cast<double>(total_ - done) / rate);
  }
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1;
  const int64_t percent = percent_done(done, total_);
  char numbers[160];
  const int64_t scale = std::max(done, total_);
  std::snprintf(numbers, sizeof numbers, "%s/%s", count_text(done, scale).c_str(),
                count_text(total_, scale).c_str());
  if (interactive_) {
    char head[320];
    std::snprintf(head, sizeof head, "%s %3lld%% ETA %s %s %s/s", numbers,
                  static_cast<long long>(percent), eta_text, rate_text, unit_.c_str());
    const std::string line = bar_line(what_, fraction, head, extra, terminal_columns());
    const std::lock_guard lock(g_line_mutex);
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
    g_bar_line_open = true;
  } else {
    const std::lock_guard lock(g_line_mutex);
    std::fprintf(stderr, "%s %s (%lld%%) %s %s/s%s%s\n", what_.c_str(), numbers,
                 static_cast<long long>(percent), rate_text, unit_.c_str(),
                 extra.empty() ? "" : " ", extra.c_str());
    std::fflush(stderr);
  }
}

void PieceSizer::took(int64_t count, double seconds) {
  if (seconds <= 0.0) return;
  piece_ = std::clamp<int64_t>(
      static_cast<int64_t>(static_cast<double>(count) * seconds_ / seconds), 1, 2 * piece_);
}

void Progress::finish() {
  const std::lock_guard lock(g_line_mutex);
  end_bar_line();
  std::fflush(stderr);
}

int64_t percent_done(int64_t done, int64_t total) {
  // done and total are at most 1e16 (1e7 chains x 1e9 steps): 100 done fits in 64 bits.
  return total > 0 ? done * 100 / total : 100;
}

std::string done_text(int64_t done, int64_t total, const char* what, const char* unit) {
  const auto count = [](int64_t n, int digits) {
    char text[32];
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(n));
    return std::string(text);
  };
  // Three digits, or as many as it takes to tell a part from the whole (9999 of 1e+04, not 1e+04 of
  // 1e+04); the percentage rounded down, so that a stopped loop never reads 100%.
  int digits = 3;
  while (done != total && digits < 19 && count(done, digits) == count(total, digits)) ++digits;
  return std::to_string(percent_done(done, total)) + "% of " + what + " (" + count(done, digits) +
         " of " + count(total, digits) + " " + unit + ")";
}

void print_own_line(const std::string& text) {
  const std::lock_guard lock(g_line_mutex);
  end_bar_line();
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

}  // namespace rbm
