// OpenBLAS on one thread while in scope. Our own tasks call sgemm concurrently, each on its own
// tile (host/cpu_minibatch.cpp); and where a GEMM is small and other work follows (the metrics'
// 500-image batches, host/evaluate.cpp), OpenBLAS's threads would spin after it on the cores that
// work needs (exploratory testing: --log-every 10 ran in 4.9 s wall on one BLAS thread, 6.7 s on
// two). OpenBLAS's thread count is global to the process: not for concurrent use.
#pragma once

#include <cblas.h>

namespace rbm {

class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : previous_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~SingleThreadedBlas() { openblas_set_num_threads(previous_); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_;
};

}  // namespace rbm
