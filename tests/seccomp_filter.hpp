// A seccomp filter for a forked test child: the named system calls fail with one errno, as they do
// on a kernel or file system without them, so that a test can reach the code's fallbacks. Linux on
// x86-64 and AArch64 only.
#pragma once

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rbm::test {

// Installs the filter in this process (one way: it cannot be removed), so call it in a child.
// Returns false when seccomp is unavailable here (no CONFIG_SECCOMP_FILTER, another architecture),
// the filter then not installed.
inline bool fail_system_calls(const std::vector<int>& calls, int error) {
#if defined(__x86_64__)
  constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
  (void)calls;
  (void)error;
  return false;
#endif
#if defined(__x86_64__) || defined(__aarch64__)
#ifdef SECCOMP_RET_KILL_PROCESS  // from Linux 4.14's headers; before, a kill of the thread
  constexpr uint32_t kKill = SECCOMP_RET_KILL_PROCESS;
#else
  constexpr uint32_t kKill = SECCOMP_RET_KILL;
#endif
  // A call of another architecture's numbering (i386's on x86-64) is killed rather than misread;
  // then each listed number returns -error; everything else runs. (x32 calls, which share
  // x86-64's token with a high bit set in the number, do not match a listed number and run.)
  std::vector<sock_filter> program = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, kKill),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
  };
  for (const int call : calls) {
    program.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(call), 0, 1));
    program.push_back(
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<uint32_t>(error) & 0xffff)));
  }
  program.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  const sock_fprog fprog = {static_cast<unsigned short>(program.size()), program.data()};
  // Without privileges a filter needs no_new_privs (it then holds for this process's execs too).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) == 0;
#endif
}

}  // namespace rbm::test
