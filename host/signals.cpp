// SIGINT, SIGTERM and SIGHUP as stop requests (see signals.hpp).
#include "host/signals.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <utility>

#include "host/progress.hpp"

namespace rbm {
namespace {

std::atomic<int> g_received{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler may only touch lock-free data");
// received() returned the signal: the program is stopping, and needs no acknowledgement.
std::atomic<bool> g_seen{false};

extern "C" void record_signal(int signal_number) {
  int none = 0;
  g_received.compare_exchange_strong(none, signal_number);
}

// Installs record_signal for signal_number unless it is ignored; keeps the old action in `old`.
// One-shot (SA_RESETHAND) where a second signal is a user's "now": Ctrl-C again kills at once.
void install(int signal_number, struct sigaction& old, bool one_shot) {
  sigaction(signal_number, nullptr, &old);
  if (old.sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: interrupted system calls resume, so that I/O and the backend never see EINTR.
  action.sa_flags = (one_shot ? SA_RESETHAND : 0) | SA_RESTART;
  sigaction(signal_number, &action, nullptr);
}

// The watcher (StopSignals): looks every 50 ms, and prints the acknowledgement once a signal has
// been unseen for kAcknowledgeAfter, counted from the first look that found it.
void acknowledge_unseen_signal(const std::stop_token& stop, const std::string& who,
                               const std::string& what_next, const std::string& after_kill) {
  constexpr auto kLook = std::chrono::milliseconds(50);
  std::chrono::steady_clock::time_point unseen_since{};
  std::mutex mutex;
  std::condition_variable_any wake;  // only for the stop request, which ends a wait at once
  std::unique_lock lock(mutex);
  while (true) {
    wake.wait_for(lock, stop, kLook, [] { return false; });
    if (stop.stop_requested()) return;
    const int signal_number = g_received.load();
    if (signal_number == 0 || g_seen.load()) continue;
    const auto now = std::chrono::steady_clock::now();
    if (unseen_since == std::chrono::steady_clock::time_point{}) unseen_since = now;
    if (now - unseen_since < StopSignals::kAcknowledgeAfter) continue;
    // A progress bar may be drawn on the current line.
    print_own_line(who + ": " + signal_name(signal_number) + " received; " + what_next + "; " +
                   (signal_number == SIGHUP
                        ? "a second SIGHUP does not stop it sooner (SIGTERM twice does)"
                        : "the same signal again kills it at once" + after_kill));
    return;
  }
}

}  // namespace

StopSignals::StopSignals(std::string who, std::string what_next, std::string after_kill)
    : exceptions_at_start_(std::uncaught_exceptions()) {
  g_received.store(0);
  g_seen.store(false);
  install(SIGINT, old_int_, true);
  install(SIGTERM, old_term_, true);
  // A closed terminal sends SIGHUP more than once (the shell's, then the kernel's when the shell
  // exits): no hangup kills the program before its checkpoint.
  install(SIGHUP, old_hup_, false);
  watcher_ = std::jthread(acknowledge_unseen_signal, std::move(who), std::move(what_next),
                          std::move(after_kill));
}

void StopSignals::stop_acknowledging() {
  if (!watcher_.joinable()) return;
  watcher_.request_stop();
  watcher_.join();
}

StopSignals::~StopSignals() {
  stop_acknowledging();
  if (std::uncaught_exceptions() > exceptions_at_start_) return;  // failing: see signals.hpp
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGHUP, &old_hup_, nullptr);
}

int StopSignals::received() const {
  const int signal_number = g_received.load();
  if (signal_number != 0) g_seen.store(true);
  return signal_number;
}

std::string signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "signal " + std::to_string(signal_number);
  }
}

}  // namespace rbm
