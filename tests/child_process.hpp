// A child process the test can signal: posix_spawn with SIGINT, SIGTERM, SIGHUP and SIGPIPE at
// their default actions (a test runner in the background or under nohup may have them ignored, and
// an ignored signal stays ignored across exec), stdout and stderr to a file (or stdout to a
// descriptor the test gives, such as a pipe's write end), and a wait that reports the exit code or
// the signal that ended it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace rbm::test {

class ChildProcess {
 public:
  // stdout_fd >= 0: the child's stdout is that descriptor, and only stderr goes to log.
  ChildProcess(const std::string& exe, const std::vector<std::string>& args,
               const std::filesystem::path& log, int stdout_fd = -1) {
    std::vector<std::string> argv_text = {exe};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_text) argv.push_back(arg.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (stdout_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    } else {
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults, none;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    const int rc = posix_spawn(&pid_, exe.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + exe);
  }
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Nothing once the child has been waited for: its pid is -1 then, and kill(-1, ...) would signal
  // every process this user may signal (the test runner and the shell around it included).
  void signal(int signal_number) const {
    if (pid_ > 0) ::kill(pid_, signal_number);
  }

  // True once the child has a handler for signal_number (SigCgt in /proc/PID/status, Linux): from
  // then on the signal reaches the program rather than ending the process. False once it ended.
  bool catches(int signal_number) const {
    if (pid_ <= 0) return false;
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigCgt:", 0) == 0) {
        return (std::stoull(line.substr(7), nullptr, 16) >> (signal_number - 1)) & 1;
      }
    }
    return false;
  }

  // Waits (looking every millisecond, up to a minute) until the child catches signal_number or
  // ends; returns catches(signal_number).
  bool wait_until_it_catches(int signal_number) {
    const auto start = std::chrono::steady_clock::now();
    while (!catches(signal_number) && !ended() &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return catches(signal_number);
  }

  // Waits for the child; afterwards exit_code() is its exit code (-1 when a signal ended it) and
  // killed_by() the signal (0 when it exited).
  void wait() {
    if (pid_ <= 0) return;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    killed_by_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  // True (and waited for) when the child has ended by now.
  bool ended() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    killed_by_ = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    return true;
  }
  int exit_code() const { return exit_code_; }
  int killed_by() const { return killed_by_; }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  int killed_by_ = 0;
};

}  // namespace rbm::test
