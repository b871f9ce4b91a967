// The one main of rbm_cpu and rbm_cuda; they differ only in the backend they link.
#include <cstdio>

#include "host/backend.hpp"
#include "host/cli.hpp"

int main(int argc, char** argv) {
  const int code = rbm::run_cli(argc, argv);
  // What went to standard output (eval's report and --json, --help) is part of the result: a
  // write that failed (a full disk, a closed pipe) must not end in exit code 0. The stream's
  // error flag says so whenever it happened; errno by now may not say why.
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "%s: cannot write standard output\n", rbm::program_name().c_str());
    return code != 0 ? code : rbm::kExitBadInput;
  }
  return code;
}
