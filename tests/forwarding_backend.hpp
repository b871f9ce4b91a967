// A Backend that hands every call to the CPU backend, for tests that change one or two of its
// methods (a divergence at a known iteration, an AIS that ignores stop requests): derive, override
// those, and call inner() for the real work.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "host/backend.hpp"

namespace rbm::test {

class ForwardingCpuBackend : public Backend {
 public:
  std::string name() const override { return inner_->name(); }
  std::string device_description() const override { return inner_->device_description(); }
  void stage(const Dataset& train) override { inner_->stage(train); }
  void set_params(const Params& params) override { inner_->set_params(params); }
  Params get_params() override { return inner_->get_params(); }
  void train_cd(const Recipe& recipe, int64_t first_iteration, int64_t count) override {
    inner_->train_cd(recipe, first_iteration, count);
  }
  void gibbs(std::span<uint8_t> states, int64_t n_chains, uint32_t seed, int64_t first_step,
             int64_t steps, int64_t first_chain) override {
    inner_->gibbs(states, n_chains, seed, first_step, steps, first_chain);
  }
  void train_minibatch(const Recipe& recipe, int64_t first_update, int64_t count) override {
    inner_->train_minibatch(recipe, first_update, count);
  }
  TrainingState get_training_state() override { return inner_->get_training_state(); }
  void set_training_state(const TrainingState& state) override {
    inner_->set_training_state(state);
  }
  double exact_log_partition(const ExactLogZRequest& request) override {
    return inner_->exact_log_partition(request);
  }
  AisResult ais(const AisRequest& request) override { return inner_->ais(request); }

 protected:
  Backend& inner() { return *inner_; }

 private:
  std::unique_ptr<Backend> inner_ = make_cpu_backend();
};

}  // namespace rbm::test
