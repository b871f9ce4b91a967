// SIGINT and SIGTERM as stop requests (see signals.hpp).
#include "host/signals.hpp"

#include <atomic>

namespace rbm {
namespace {

std::atomic<int> g_received{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler may only touch lock-free data");

extern "C" void record_signal(int signal_number) {
  int none = 0;
  g_received.compare_exchange_strong(none, signal_number);
}

// Installs record_signal for signal_number unless it is ignored; keeps the old action in `old`.
void install(int signal_number, struct sigaction& old) {
  sigaction(signal_number, nullptr, &old);
  if (old.sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: interrupted system calls resume, so that I/O and the backend never see EINTR.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(signal_number, &action, nullptr);
}

}  // namespace

StopSignals::StopSignals() {
  g_received.store(0);
  install(SIGINT, old_int_);
  install(SIGTERM, old_term_);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

int StopSignals::received() const { return g_received.load(); }

std::string signal_name(int signal_number) {
  switch (signal_number) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal " + std::to_string(signal_number);
  }
}

}  // namespace rbm
