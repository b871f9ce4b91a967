// Whole-file I/O: the project's single writer of output files (atomic: temporary file, fsync,
// rename, fsync of the directory), the matching whole-file reader, and the lock that gives a run
// directory one writer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace rbm {

// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old file or the whole
// new one, never a torn one. Throws InputError naming the path and strerror(errno); the temporary
// file (.NAME.tmp.PID in the same directory) is removed on failure. A symbolic link is followed:
// the file it names is replaced (in that file's directory), and the link stays.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The same for a file written a piece at a time: its bytes are the pieces `next_piece` returns, in
// order, until it returns an empty one (large outputs need no whole-file copy in memory). An
// exception from next_piece removes the temporary file and passes through.
void write_file_atomic(const std::filesystem::path& path,
                       const std::function<std::string_view()>& next_piece);

// write_file_atomic in its halves, for outputs that are written all or none (`sample`'s) or a
// piece at a time as they are made: the temporary file is opened, written (append) and synced
// (finish), then commit() renames it over the file and syncs the directory. Where the file system
// allows (O_TMPFILE), the temporary file has no name until finish(): a process killed while it
// writes, by any means, leaves nothing behind. Stage every output
// first, then commit each: a failure to write one (a full disk) leaves every file as it was. A
// StagedFile destroyed uncommitted removes its temporary file, and so does a SIGINT, SIGTERM or
// SIGHUP that kills the program meanwhile (up to kMaxGuardedTemporaries at once). Errors as
// write_file_atomic's; after one the temporary file is gone, and the StagedFile holds nothing.
class StagedFile {
 public:
  static constexpr int kMaxGuardedTemporaries = 4;

  // Opens the temporary file, empty, for append().
  explicit StagedFile(const std::filesystem::path& path);
  // The temporary file written with the pieces next_piece returns until an empty one, and
  // finished; or with `bytes`, and finished.
  StagedFile(const std::filesystem::path& path,
             const std::function<std::string_view()>& next_piece);
  StagedFile(const std::filesystem::path& path, std::string_view bytes);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&&) = delete;
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile();

  // Writes `bytes` at the end of the temporary file (until finish()).
  void append(std::string_view bytes);
  // Syncs and closes the temporary file: all of it is written, ready to commit.
  void finish();
  // Renames the finished temporary file over the file (the target of a symbolic link, as
  // write_target); once only. A failure to sync the directory afterwards throws with the file in
  // place.
  void commit();
  // commit() where no file has the name: false, with the temporary file removed and nothing
  // changed, when one has (a name taken by another process meanwhile is never replaced).
  bool commit_unless_taken();
  // Whether commit() has renamed the file into place (its directory's sync may have failed after).
  bool in_place() const { return in_place_; }
  // The file as named.
  const std::filesystem::path& path() const { return path_; }

 private:
  // Links the unnamed temporary file (O_TMPFILE) as tmp_, once it is whole.
  void give_name();
  // commit() (replace) or commit_unless_taken() (not).
  bool move_into_place(bool replace);
  [[noreturn]] void fail_writing(int err);
  // Closes the temporary file if open and gives up its signal guard; discard() removes it first.
  void release() noexcept;
  void discard() noexcept;

  std::filesystem::path path_;    // as named, for messages
  std::filesystem::path target_;  // write_target(path_)
  std::filesystem::path tmp_;     // .NAME.tmp.PID beside target_
  int guard_slot_ = -1;           // the signal handlers' slot for tmp_, or -1 (none, moved from)
  int fd_ = -1;                   // the temporary file open for writing, or -1 (finished, none)
  bool staged_ = false;           // tmp_ exists and is ours to rename or remove; false while fd_
                                  // is an unnamed O_TMPFILE file
  bool in_place_ = false;         // tmp_ has been renamed over target_
};

// For tests: whether StagedFile tries an unnamed O_TMPFILE file first (true, the default). False
// gives the named temporary files of file systems without O_TMPFILE (NFS, CIFS, vfat, ...) on any
// file system, so that the suite runs that path too.
void allow_unnamed_temporaries(bool allowed);

// The file that writing `path` replaces: `path` itself or, when it is a symbolic link, the file the
// link names, followed through up to 40 links as open(2) would (a dangling link's target is
// created). Renaming the temporary file over the link would replace the link with a file: `sample
// --out /dev/stdout`, stdout redirected to a file, replaced the system's /dev/stdout. Throws
// InputError for a link that cannot be read, a loop, and a link that open(2) refuses to follow
// under fs.protected_symlinks (another user's, in a sticky world-writable directory such as /tmp).
std::filesystem::path write_target(const std::filesystem::path& path);

// `path`'s status, following links; file_type::not_found for a path that is missing (or under a
// file), for the caller to judge. One that cannot be looked at (a symbolic-link loop, no
// permission, a name too long) throws InputError "NAME: cannot examine: WHY", NAME as given.
std::filesystem::file_status examined_status(const std::filesystem::path& path,
                                             const std::string& name);

// The bytes this process may still write on the file system where StagedFile(path) puts its
// temporary file (beside write_target(path)): statvfs(3)'s free blocks, less those reserved for
// root when not run as root. nullopt when statvfs cannot tell (it fails, or the file system has
// no blocks, as procfs).
std::optional<uint64_t> free_bytes_for(const std::filesystem::path& path);

// Owns a file descriptor (-1: none) and closes it on destruction.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&&) = delete;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();
  int get() const { return fd_; }

 private:
  int fd_;
};

// A regular file open for reading from its start, in pieces, so that a large file (MNIST's 47 MB
// of training images) need not be in memory at once.
class FileReader {
 public:
  // Throws InputError naming the path: it cannot be opened (strerror(errno)) or is not a regular
  // file.
  explicit FileReader(const std::filesystem::path& path);
  // The same, or nullopt when `path` does not exist when it is opened.
  static std::optional<FileReader> open_if_exists(const std::filesystem::path& path);

  // Reads up to n bytes into out and returns how many: fewer than n only at the end of the file
  // (0 there). Throws InputError naming the path when read(2) fails.
  size_t read(void* out, size_t n);
  // The file's size when it was opened: a hint, as the file may grow or shrink meanwhile.
  uint64_t size_when_opened() const { return size_when_opened_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  FileReader(const std::filesystem::path& path, FileDescriptor fd);

  std::filesystem::path path_;
  FileDescriptor fd_;
  uint64_t size_when_opened_ = 0;
};

// The whole content of `path`. Throws InputError naming the path and strerror(errno).
std::string read_file(const std::filesystem::path& path);
// The same, or nullopt when `path` does not exist when it is opened (a reader of a directory that
// a writer renames files in: a file seen a moment ago may be gone).
std::optional<std::string> read_file_if_exists(const std::filesystem::path& path);

// An exclusive flock(2) on a directory, held from construction to destruction (or to the death of
// the process): two runs that would write the same run directory (a second --resume, a new run
// into it) cannot both hold it. Throws InputError naming the directory when another process holds
// it, or when it cannot be opened.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::filesystem::path& dir);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace rbm
