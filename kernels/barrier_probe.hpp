// The latency of the fused kernel's two barriers on device 0 (issue 8's lab, bench/fused_lab.cpp),
// includable from plain C++: an iteration of the fused CD-3 trainer is a chain of 21 phases between
// barriers, 4 of them across the cluster (kernels/fused_cd_cta.h), so these two numbers bound how
// fast any design with that chain can go.
#pragma once

namespace rbm {

struct BarrierLatency {
  double cta_ns = 0.0;      // one __syncthreads() of a CTA, all of the cluster's CTAs at once
  double cluster_ns = 0.0;  // one cluster.sync() of the whole cluster
};

// One cluster of cluster_ctas (8, or 16 where the device holds it) CTAs of `threads` threads (a
// multiple of 32, at most 1024) runs `rounds` barriers of one kind in a loop, then 2 x rounds; the
// difference of the two launches' times (CUDA events), over rounds, is one barrier's latency
// without the launch. Throws InputError when the device cannot run such a cluster.
BarrierLatency measure_barrier_latency(int cluster_ctas, int threads, int rounds);

}  // namespace rbm
