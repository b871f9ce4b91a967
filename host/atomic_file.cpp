// write_file_atomic, FileReader and read_file over POSIX file descriptors (fsync needs one).
#include "host/atomic_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "host/errors.hpp"

namespace rbm {
namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what, int err) {
  throw InputError(path.string() + ": " + what + ": " + std::strerror(err));
}

// allow_unnamed_temporaries's setting.
std::atomic<bool> g_unnamed_temporaries{true};

constexpr int kGuardSlots = StagedFile::kMaxGuardedTemporaries;
constexpr std::array<int, 3> kGuardedSignals = {SIGINT, SIGTERM, SIGHUP};

// The temporary files written or staged now, for the handler below: slot k's path while
// g_temporary_set[k] is 1.
char g_temporary_paths[kGuardSlots][4096];
volatile sig_atomic_t g_temporary_set[kGuardSlots] = {};

// For each guarded signal: whether the guard's handler is installed, the action it replaced, and
// whether that action was a one-shot handler (SA_RESETHAND, as StopSignals') that has had its
// signal, so that the next one takes the default action, as it would have without the guard.
std::array<bool, kGuardedSignals.size()> g_handler_installed{};
std::array<struct sigaction, kGuardedSignals.size()> g_previous_action{};
volatile sig_atomic_t g_one_shot_used[kGuardedSignals.size()] = {};

bool takes_default_action(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_DFL;
}
bool is_ignored(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_IGN;
}

// A signal whose action would kill the program (the default, or the default after a one-shot
// handler) first removes the temporary files, then kills it as that action would; any other goes
// to the handler it would have gone to (StopSignals' records it: a first Ctrl-C during the writes
// lets them finish, and a second kills the program, now without leaving its temporary files).
extern "C" void remove_temporaries_or_pass_on(int signal_number, siginfo_t* info, void* context) {
  size_t k = 0;
  while (k + 1 < kGuardedSignals.size() && kGuardedSignals[k] != signal_number) ++k;
  const struct sigaction& previous = g_previous_action[k];
  if (takes_default_action(previous) || g_one_shot_used[k]) {
    for (int slot = 0; slot < kGuardSlots; ++slot) {
      if (g_temporary_set[slot]) ::unlink(g_temporary_paths[slot]);
    }
    ::signal(signal_number, SIG_DFL);
    ::raise(signal_number);  // dies of the signal once this handler returns, as it would have
    return;
  }
  if ((previous.sa_flags & SA_RESETHAND) != 0) g_one_shot_used[k] = 1;
  if ((previous.sa_flags & SA_SIGINFO) != 0) {
    previous.sa_sigaction(signal_number, info, context);
  } else {
    previous.sa_handler(signal_number);
  }
}

// While temporary files are written or staged, a SIGINT, SIGTERM or SIGHUP that kills the program
// first removes them, so that an interrupted command leaves no .NAME.tmp.PID of up to gigabytes
// behind; a signal the program handles goes to its handler, and an ignored one stays ignored. The
// handler comes with the first guarded file and goes with the last (unless the program has set
// another action meanwhile); the files are the commands' one writing thread's. A file beyond
// kGuardSlots or of an over-long path goes unguarded.
int g_guarded_files = 0;

// The slot that now guards `tmp`, or -1 when none does.
int guard_temporary(const std::filesystem::path& tmp) {
  const std::string& text = tmp.native();
  if (text.size() >= sizeof g_temporary_paths[0]) return -1;
  int slot = 0;
  while (slot < kGuardSlots && g_temporary_set[slot]) ++slot;
  if (slot == kGuardSlots) return -1;
  std::memcpy(g_temporary_paths[slot], text.c_str(), text.size() + 1);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the path is whole before it is live
  g_temporary_set[slot] = 1;
  if (g_guarded_files++ == 0) {
    for (size_t k = 0; k < kGuardedSignals.size(); ++k) {
      g_handler_installed[k] = false;
      g_one_shot_used[k] = 0;
      struct sigaction current {};
      if (::sigaction(kGuardedSignals[k], nullptr, &current) != 0 || is_ignored(current)) continue;
      g_previous_action[k] = current;
      struct sigaction guard {};
      guard.sa_sigaction = remove_temporaries_or_pass_on;
      guard.sa_mask = current.sa_mask;
      // The replaced action's restarting of system calls; the one-shot reset is emulated above.
      guard.sa_flags = SA_SIGINFO | (current.sa_flags & SA_RESTART);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // g_previous_action before the handler
      struct sigaction replaced {};
      g_handler_installed[k] = ::sigaction(kGuardedSignals[k], &guard, &replaced) == 0;
      // A one-shot handler's signal between the look and the swap reset the action to the default:
      // the action swapped out is the one to stand for (a window of nanoseconds remains, in which
      // such a second signal would go to the spent handler).
      if (g_handler_installed[k] && takes_default_action(replaced)) g_previous_action[k] = replaced;
    }
  }
  return slot;
}

void release_temporary(int slot) {
  if (slot < 0) return;
  g_temporary_set[slot] = 0;
  if (--g_guarded_files > 0) return;
  for (size_t k = 0; k < kGuardedSignals.size(); ++k) {
    if (!g_handler_installed[k]) continue;
    struct sigaction current {};
    if (::sigaction(kGuardedSignals[k], nullptr, &current) != 0 ||
        (current.sa_flags & SA_SIGINFO) == 0 ||
        current.sa_sigaction != remove_temporaries_or_pass_on) {
      continue;  // the program has set another action since: it stays
    }
    struct sigaction restored = g_previous_action[k];
    if (g_one_shot_used[k]) {  // the kernel would have reset it when its signal came
      restored = {};
      restored.sa_handler = SIG_DFL;
      sigemptyset(&restored.sa_mask);
    }
    ::sigaction(kGuardedSignals[k], &restored, nullptr);
  }
}

// The directory that holds `path`'s entry: its parent, or "." for a bare name.
std::filesystem::path directory_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : ".";
}

// Whether the kernel protects links (/proc/sys/fs/protected_symlinks is 1); yes when it cannot be
// read, the safer guess.
bool protected_symlinks() {
  std::FILE* setting = std::fopen("/proc/sys/fs/protected_symlinks", "r");
  if (setting == nullptr) return true;
  const int first = std::fgetc(setting);
  std::fclose(setting);
  return first != '0';
}

}  // namespace

std::filesystem::path write_target(const std::filesystem::path& path) {
  std::filesystem::path target = path;
  for (int hops = 0; hops < 40; ++hops) {
    struct stat status {};
    if (::lstat(target.c_str(), &status) != 0 || !S_ISLNK(status.st_mode)) return target;
    // Linux's fs.protected_symlinks (when it is on, as systemd sets it): open(2) does not follow a
    // link in a sticky world-writable directory (/tmp) owned neither by the follower nor by the
    // directory's owner; nor does this (another user's /tmp/out.npy -> ~/.bashrc would replace
    // ~/.bashrc).
    const std::filesystem::path link_dir = directory_of(target);
    struct stat dir_status {};
    if (protected_symlinks() && ::stat(link_dir.c_str(), &dir_status) == 0 &&
        (dir_status.st_mode & S_ISVTX) != 0 && (dir_status.st_mode & S_IWOTH) != 0 &&
        status.st_uid != ::geteuid() && status.st_uid != dir_status.st_uid) {
      fail(path,
           "the symbolic link " + target.string() +
               " is another user's, in a sticky world-writable directory: not followed, as "
               "open(2) would not (fs.protected_symlinks)",
           EACCES);
    }
    std::error_code error;
    const std::filesystem::path next = std::filesystem::read_symlink(target, error);
    if (error) fail(path, "cannot read the symbolic link " + target.string(), error.value());
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  fail(path, "cannot follow its symbolic links", ELOOP);
}

void allow_unnamed_temporaries(bool allowed) { g_unnamed_temporaries.store(allowed); }

std::filesystem::file_status examined_status(const std::filesystem::path& path,
                                             const std::string& name) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error && error != std::errc::no_such_file_or_directory &&
      error != std::errc::not_a_directory) {
    throw InputError(name + ": cannot examine: " + error.message());
  }
  return status;
}

std::optional<uint64_t> free_bytes_for(const std::filesystem::path& path) {
  struct statvfs fs {};
  // A file system without blocks (procfs, where /dev/stdout leads to a pipe) cannot tell.
  if (::statvfs(directory_of(write_target(path)).c_str(), &fs) != 0 || fs.f_blocks == 0) {
    return std::nullopt;
  }
  const uint64_t blocks = ::geteuid() == 0 ? fs.f_bfree : fs.f_bavail;
  return blocks * fs.f_frsize;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  StagedFile(path, bytes).commit();
}

void write_file_atomic(const std::filesystem::path& path,
                       const std::function<std::string_view()>& next_piece) {
  StagedFile(path, next_piece).commit();
}

namespace {

// .NAME.tmp.PID, with NAME cut (at the start of a UTF-8 character) where the whole would pass the
// 255 bytes a file name may have: a legal name of 250 bytes could not be staged.
std::string temporary_name(const std::string& name) {
  constexpr size_t kNameMax = 255;
  const std::string suffix = ".tmp." + std::to_string(::getpid());
  size_t keep = std::min(name.size(), kNameMax - 1 - suffix.size());
  while (keep > 0 && keep < name.size() &&
         (static_cast<unsigned char>(name[keep]) & 0xC0) == 0x80) {
    --keep;  // a continuation byte: the character starts before it
  }
  return "." + name.substr(0, keep) + suffix;
}

}  // namespace

StagedFile::StagedFile(const std::filesystem::path& path)
    : path_(path), target_(write_target(path)) {
  tmp_ = directory_of(target_) / temporary_name(target_.filename().string());
  // Unnamed while it is written, where the file system allows (O_TMPFILE: ext4, xfs, btrfs,
  // tmpfs): a process killed meanwhile (SIGKILL, the OOM killer, a crash) leaves nothing behind,
  // however long the writing (sample's --out grows for hours). Else named from the start.
  if (g_unnamed_temporaries.load()) {
    fd_ = ::open(directory_of(target_).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd_ >= 0) return;
  }
  guard_slot_ = guard_temporary(tmp_);
  staged_ = true;
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_writing(errno);
}

StagedFile::StagedFile(const std::filesystem::path& path,
                       const std::function<std::string_view()>& next_piece)
    : StagedFile(path) {
  // Constructed once the delegated constructor returns: a throw from here on (next_piece's too)
  // runs the destructor, which removes the temporary file.
  for (std::string_view bytes = next_piece(); !bytes.empty(); bytes = next_piece()) append(bytes);
  finish();
}

StagedFile::StagedFile(const std::filesystem::path& path, std::string_view bytes)
    : StagedFile(path) {
  append(bytes);
  finish();
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : path_(std::move(other.path_)),
      target_(std::move(other.target_)),
      tmp_(std::move(other.tmp_)),
      guard_slot_(std::exchange(other.guard_slot_, -1)),
      fd_(std::exchange(other.fd_, -1)),
      staged_(std::exchange(other.staged_, false)),
      in_place_(std::exchange(other.in_place_, false)) {}

StagedFile::~StagedFile() { discard(); }

void StagedFile::append(std::string_view bytes) {
  if (fd_ < 0) {
    throw std::logic_error("StagedFile::append: " + path_.string() + " is not open for writing");
  }
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_writing(n < 0 ? errno : EIO);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void StagedFile::finish() {
  if (fd_ < 0) {
    throw std::logic_error("StagedFile::finish: " + path_.string() + " is not open for writing");
  }
  if (::fsync(fd_) != 0) fail_writing(errno);
  if (!staged_) give_name();
  // close() reports write-back errors on some file systems, so its result matters.
  if (::close(std::exchange(fd_, -1)) != 0) fail_writing(errno);
}

void StagedFile::give_name() {
  // Through /proc/self/fd, as linkat(2) documents for an O_TMPFILE file; without /proc (ENOENT),
  // AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH.
  const std::string fd_path = "/proc/self/fd/" + std::to_string(fd_);
  const auto link_to_tmp = [&] {
    if (::linkat(AT_FDCWD, fd_path.c_str(), AT_FDCWD, tmp_.c_str(), AT_SYMLINK_FOLLOW) == 0)
      return 0;
    if (errno != ENOENT) return errno;
    return ::linkat(fd_, "", AT_FDCWD, tmp_.c_str(), AT_EMPTY_PATH) == 0 ? 0 : errno;
  };
  guard_slot_ = guard_temporary(tmp_);  // before the name exists: no moment unguarded
  int err = link_to_tmp();
  // A file of that name is the temporary of a dead process that had our PID.
  if (err == EEXIST && ::unlink(tmp_.c_str()) == 0) err = link_to_tmp();
  if (err != 0) {
    release();  // tmp_ is not ours: nothing to remove
    fail(path_, "cannot name its temporary file " + tmp_.string(), err);
  }
  staged_ = true;
}

void StagedFile::fail_writing(int err) {
  const std::string what = staged_
                               ? "cannot write temporary file " + tmp_.string()
                               : "cannot write its temporary file (unnamed until complete, in " +
                                     directory_of(target_).string() + ")";
  discard();
  fail(path_, what, err);
}

void StagedFile::release() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  staged_ = false;
  release_temporary(std::exchange(guard_slot_, -1));
}

void StagedFile::discard() noexcept {
  if (staged_) ::unlink(tmp_.c_str());
  release();
}

void StagedFile::commit() { move_into_place(/*replace=*/true); }

bool StagedFile::commit_unless_taken() { return move_into_place(/*replace=*/false); }

bool StagedFile::move_into_place(bool replace) {
  if (!staged_ || fd_ >= 0) {
    throw std::logic_error("StagedFile::commit: " + path_.string() + " is not staged and finished");
  }
  // Without replacing: renameat2's RENAME_NOREPLACE; where the kernel or file system lacks it
  // (EINVAL, ENOSYS, or EPERM from a seccomp filter), a hard link, which fails as well when the
  // name is taken, and the temporary name's removal; where hard links are not allowed either
  // (vfat), a look at the name before the rename (racy, the last resort).
  const auto rename_new = [&]() -> int {
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, target_.c_str(), RENAME_NOREPLACE) == 0) {
      return 0;
    }
    if (errno == EEXIST) return EEXIST;
    if (::link(tmp_.c_str(), target_.c_str()) == 0) {
      ::unlink(tmp_.c_str());
      return 0;
    }
    if (errno == EEXIST) return EEXIST;
    std::error_code error;
    if (std::filesystem::exists(std::filesystem::symlink_status(target_, error))) return EEXIST;
    return ::rename(tmp_.c_str(), target_.c_str()) == 0 ? 0 : errno;
  };
  const int err =
      replace ? (::rename(tmp_.c_str(), target_.c_str()) == 0 ? 0 : errno) : rename_new();
  if (err == EEXIST && !replace) {
    discard();
    return false;
  }
  if (err != 0) {
    discard();
    fail(path_, "cannot rename " + tmp_.string() + " over " + target_.string(), err);
  }
  in_place_ = true;
  release();
  // The rename is durable only once the directory entry is; some file systems cannot sync a
  // directory (EINVAL), and there is nothing more to do on those.
  const std::filesystem::path dir = directory_of(target_);
  const FileDescriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) fail(path_, "cannot open directory " + dir.string() + " to sync it", errno);
  if (::fsync(dir_fd.get()) != 0 && errno != EINVAL) {
    fail(path_, "cannot sync directory " + dir.string(), errno);
  }
  return true;
}

std::string read_file(const std::filesystem::path& path) {
  std::optional<std::string> bytes = read_file_if_exists(path);
  if (!bytes) fail(path, "cannot open", ENOENT);
  return std::move(*bytes);
}

std::optional<std::string> read_file_if_exists(const std::filesystem::path& path) {
  std::optional<FileReader> file = FileReader::open_if_exists(path);
  if (!file) return std::nullopt;
  // The size is a hint: read until end of file in case the file grows or shrinks meanwhile.
  std::string bytes(static_cast<size_t>(file->size_when_opened()), '\0');
  size_t have = 0;
  for (;;) {
    if (have == bytes.size()) bytes.resize(bytes.size() + 65536);
    const size_t n = file->read(bytes.data() + have, bytes.size() - have);
    if (n == 0) break;
    have += n;
  }
  bytes.resize(have);
  return bytes;
}

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// open(2) for reading; nullopt when the path does not exist, InputError for any other failure.
// O_NONBLOCK: opening a FIFO waits for a writer without it (forever, deaf to SIGINT); FileReader
// then refuses it as not a regular file. Reads of regular files ignore the flag.
std::optional<FileDescriptor> open_to_read(const std::filesystem::path& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() >= 0) return fd;
  const int err = errno;
  if (err == ENOENT) return std::nullopt;
  fail(path, "cannot open", err);
}

}  // namespace

FileReader::FileReader(const std::filesystem::path& path)
    : FileReader(path, [&] {
        std::optional<FileDescriptor> fd = open_to_read(path);
        if (!fd) fail(path, "cannot open", ENOENT);
        return std::move(*fd);
      }()) {}

std::optional<FileReader> FileReader::open_if_exists(const std::filesystem::path& path) {
  std::optional<FileDescriptor> fd = open_to_read(path);
  if (!fd) return std::nullopt;
  return FileReader(path, std::move(*fd));
}

FileReader::FileReader(const std::filesystem::path& path, FileDescriptor fd)
    : path_(path), fd_(std::move(fd)) {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) fail(path_, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) throw InputError(path_.string() + ": not a regular file");
  size_when_opened_ = static_cast<uint64_t>(st.st_size);
}

size_t FileReader::read(void* out, size_t n) {
  // read(2) may return less than asked before the end (a signal); only 0 means the end.
  size_t have = 0;
  while (have < n) {
    const ssize_t got = ::read(fd_.get(), static_cast<char*>(out) + have, n - have);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path_, "cannot read", errno);
    if (got == 0) break;
    have += static_cast<size_t>(got);
  }
  return have;
}

DirectoryLock::DirectoryLock(const std::filesystem::path& dir)
    : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (fd_ < 0 && (errno == ENOENT || errno == ENOTDIR)) {
    throw InputError(dir.string() + ": not a directory");
  }
  if (fd_ < 0) fail(dir, "cannot open the directory to lock it", errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    if (err == EWOULDBLOCK) {
      throw InputError(dir.string() +
                       ": another rbm process is writing to this run directory (training or "
                       "resuming it); wait for it to finish or stop it first");
    }
    fail(dir, "cannot lock the directory", err);
  }
}

DirectoryLock::~DirectoryLock() { ::close(fd_); }

}  // namespace rbm
