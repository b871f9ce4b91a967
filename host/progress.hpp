// Progress of a long loop on stderr: a redrawn bar with rate and ETA when stderr is a terminal,
// a plain line per update otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace rbm {

class Progress {
 public:
  // `first`: units done before this process started (a resumed run), left out of the rate;
  // `unit`: what the rate counts ("it" for iterations: "it/s").
  Progress(std::string what, int64_t total, int64_t first = 0, std::string unit = "it");
  // done units of total so far, and extra text for the line (metrics).
  void update(int64_t done, const std::string& extra);
  void finish();
  bool interactive() const { return interactive_; }

 private:
  std::string what_;
  std::string unit_;
  int64_t total_;
  int64_t first_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_;
};

// An interactive progress line: "what [####......] numbers extra", cut to columns - 1 characters;
// the 20-character bar narrows (down to none) before the numbers would be cut.
std::string bar_line(const std::string& what, double fraction, const std::string& numbers,
                     const std::string& extra, size_t columns);

// done of total in whole percent, rounded down (in integers: 29 of 100 is 29, and a loop reads 100
// only when it is done); 100 for a total of 0.
int64_t percent_done(int64_t done, int64_t total);

// "31% of the sampling (9.3e+08 of 3e+09 chain-steps)": done of total units of `what`, for the
// line that says how far an interrupted loop came.
std::string done_text(int64_t done, int64_t total, const char* what, const char* unit);

// Prints `text` and a '\n' on stderr, on a line of its own: the line of an interactive progress
// bar drawn and not yet ended is ended first. Safe from any thread (the stop signals' watcher,
// host/signals.hpp, calls it): the bar's draws and this take one lock.
void print_own_line(const std::string& text);

// The sizes of the pieces a long loop runs between looks at the stop signals and redraws of its
// progress: about `seconds` each, the first one unit and each next at most twice the last (a unit
// may take seconds, so no guess of its cost comes first).
class PieceSizer {
 public:
  explicit PieceSizer(double seconds) : seconds_(seconds) {}
  int64_t next() const { return piece_; }
  // The last piece ran `count` units in `seconds`.
  void took(int64_t count, double seconds);

 private:
  double seconds_;
  int64_t piece_ = 1;
};

}  // namespace rbm
