// How many threads the host's parallel work runs on: in rbm_cpu the sampler, minibatch training,
// AIS, exact log Z and the pseudo-log-likelihood; in rbm_cuda the pseudo-log-likelihood and
// sample's start states (host/numeric.hpp's parallel_for, host/cpu_minibatch.hpp). Results do not
// depend on the count: each is computed per chain, run, pixel or piece of states and added up in
// a fixed order.
#pragma once

#include <optional>

namespace rbm {

// RBM_CPU_THREADS, the threads the CPU build is told to use, when set and not empty: an integer
// in 1..1024, else InputError naming the variable and its value.
std::optional<int> forced_cpu_threads();

// RBM_CPU_THREADS when set, else the hardware threads (at least 1).
int cpu_threads();

}  // namespace rbm
