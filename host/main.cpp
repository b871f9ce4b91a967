// The one main of rbm_cpu and rbm_cuda; they differ only in the backend they link.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "host/backend.hpp"
#include "host/cli.hpp"

int main(int argc, char** argv) {
  const int code = rbm::run_cli(argc, argv);
  // What went to standard output (eval's report and --json, --help) is part of the result: a
  // write that failed (a full disk, a closed pipe) must not end in exit code 0.
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const int error = errno;
    std::fprintf(stderr, "%s: cannot write standard output%s%s\n", rbm::program_name().c_str(),
                 error != 0 ? ": " : "", error != 0 ? std::strerror(error) : "");
    return code != 0 ? code : rbm::kExitBadInput;
  }
  return code;
}
