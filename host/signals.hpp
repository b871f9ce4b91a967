// Stop requests for the training loop: SIGINT, SIGTERM and SIGHUP (a closed terminal, a lost ssh
// connection) only record which signal came (the handler is async-signal-safe), and the loop polls
// between pieces of training (and a log point's metrics poll within, host/stop.hpp), writes a
// checkpoint and throws Interrupted; the CLI exits with 128 + the signal number.
#pragma once

#include <signal.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace rbm {

// Installs the handlers for its lifetime and restores the previous ones on destruction. A signal
// that was ignored when the program started (a background job's SIGINT, nohup's SIGHUP) stays
// ignored. The SIGINT and SIGTERM handlers are one-shot (SA_RESETHAND): a second Ctrl-C kills the
// program at once, which the atomic writes make safe. The SIGHUP one stays: a closed terminal sends
// SIGHUP twice (the shell's, and the kernel's when the shell exits), and the program stops as for
// one.
//
// Left by an exception (a failed write, bad data found late), it keeps its handlers: the program
// is on its way to print the failure and exit with its code, and a signal in that gap must not end
// it silently by the default action (exit 143 and no line, on a full disk: exploratory tester). A
// second SIGINT or SIGTERM still kills it at once.
//
// A signal that the program has not looked at (received()) within kAcknowledgeAfter is inside work
// that cannot stop part way (one long update, one block's Gibbs step, CUDA AIS): a watcher thread
// then prints "WHO: SIGINT received; WHAT_NEXT; the same signal again kills it at once" on stderr,
// once, so that the user knows it was heard and waits, rather than sending a second one. A stop
// that comes in time prints nothing here.
class StopSignals {
 public:
  static constexpr std::chrono::milliseconds kAcknowledgeAfter{1000};

  // who: the messages' prefix ("rbm_cpu", "rbm_cpu sample"); what_next: what the program does
  // now, for the acknowledgement, which then says what a second signal does: "the same signal again
  // kills it at once" + after_kill (SIGINT, SIGTERM), or that a second SIGHUP does not.
  StopSignals(std::string who, std::string what_next, std::string after_kill = "");
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // 0 while none came, else the first of SIGINT, SIGTERM or SIGHUP that did (which counts as
  // seen).
  int received() const;

  // No acknowledgement from now on, the handlers kept: what follows finishes the command whatever
  // comes (the last writes), so "the run stops when..." would be wrong.
  void stop_acknowledging();

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_hup_ {};
  std::jthread watcher_;
  int exceptions_at_start_ = 0;  // std::uncaught_exceptions() when constructed
};

// "SIGINT", "SIGTERM", "SIGHUP", or "signal N".
std::string signal_name(int signal_number);

// Training stopped on a signal after writing its checkpoint.
struct Interrupted : std::runtime_error {
  Interrupted(int signal_number, const std::string& what)
      : std::runtime_error(what), signal(signal_number) {}
  int signal;
};

}  // namespace rbm
