// Whether the CPU build's single-sample recipe runs on one thread or two (host/cpu_backend.cpp):
// the results are bit-identical either way, so the choice is speed alone, and it is measured, not
// guessed. Two threads meet at a barrier several times per iteration, microseconds apart: on an
// idle second core that nearly halves the time, but when another job holds that core each meeting
// waits for the scheduler and an iteration takes several times as long as on one thread
// (exploratory testing measured 84 to 326 us against 35). The load average cannot say which case
// holds: it lags by a minute and counts this process too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

namespace rbm {

// Times each mode (seconds per iteration of its latest call) and runs the faster; a mode not yet
// timed is tried first (two threads first: the better one on an idle machine). The slower mode is
// tried again after `retry` calls, so that a load that comes or goes changes the choice; each
// retry that confirms it doubles the wait, up to kMaxRetryCalls, so that a lasting load costs
// little (one slow call in 256: with the trainer's pieces of about 0.05 s, one every ~13 s).
class ThreadChoice {
 public:
  static constexpr int kFirstRetryCalls = 16;
  static constexpr int kMaxRetryCalls = 256;

  // Whether the next call runs on two threads.
  bool two_threads() const {
    if (!per_iteration_[1]) return true;
    if (!per_iteration_[0]) return false;
    const bool faster_two = *per_iteration_[1] <= *per_iteration_[0];
    return calls_since_retry_ >= retry_calls_ ? !faster_two : faster_two;
  }

  // The call just made: `two` threads ran `count` iterations in `seconds`.
  void took(bool two, int64_t count, double seconds) {
    if (count <= 0 || seconds <= 0.0) return;
    std::optional<double>& mine = per_iteration_[two ? 1 : 0];
    const std::optional<double>& other = per_iteration_[two ? 0 : 1];
    const bool was_retry = mine && other && calls_since_retry_ >= retry_calls_;
    mine = seconds / static_cast<double>(count);
    if (!was_retry) {
      ++calls_since_retry_;
      return;
    }
    calls_since_retry_ = 0;
    // The retried mode is still the slower: wait longer before the next retry. Faster now: it
    // takes over, and retries of the other start again at the first wait.
    retry_calls_ = *mine > *other ? std::min(2 * retry_calls_, kMaxRetryCalls) : kFirstRetryCalls;
  }

 private:
  std::optional<double> per_iteration_[2];  // seconds per iteration: [0] one thread, [1] two
  int calls_since_retry_ = 0;
  int retry_calls_ = kFirstRetryCalls;
};

}  // namespace rbm
