// Stopping a long computation on request: the metrics of a training log point (host/metrics.hpp,
// host/train_eval.hpp, host/log_z.hpp), AIS on the CPU (host/ais.hpp) and exact log Z on the CPU
// (host/evaluate.hpp) look at a StopRequest between small pieces of their work and give up by
// throwing Stopped, so that a SIGINT that comes during a log point stops the run within a piece,
// not after the whole log point (host/trainer.cpp), and one during eval's log Z stops eval
// (host/cmd_eval.cpp).
#pragma once

#include <functional>
#include <stdexcept>

namespace rbm {

// Whether to stop now. Called often and from several threads at once, so it must be cheap and
// thread-safe (an atomic load), and once true stay true. Empty: never stop.
using StopRequest = std::function<bool()>;

inline bool stop_requested(const StopRequest& stop) { return stop && stop(); }

// A computation gave up on its StopRequest: it has no result. The trainer and eval catch it;
// nothing else passes a StopRequest.
struct Stopped : std::runtime_error {
  Stopped() : std::runtime_error("stopped on request") {}
};

inline void throw_if_stopped(const StopRequest& stop) {
  if (stop_requested(stop)) throw Stopped();
}

}  // namespace rbm
