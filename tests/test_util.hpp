// Helpers shared by the tests: an environment variable set for a scope, a temporary directory
// that cleans up after itself, a text file's lines, a directory's entries, and raw file writing
// for hand-made (often deliberately broken) input files.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/errors.hpp"

namespace rbm::test {

// Sets an environment variable for the guard's lifetime, then restores the old value (or its
// absence), so that a forced thread count does not leak into the tests that follow.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    set(value);
  }
  ~ScopedEnv() { set(old_ ? old_->c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  void set(const char* value) {
    if (value) {
      setenv(name_.c_str(), value, 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// A fresh directory under $TMPDIR (default /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rbm_test_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::system_error(errno, std::generic_category(), pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The working directory changed for a scope and restored however the scope ends.
class WorkingDirectory {
 public:
  explicit WorkingDirectory(const std::filesystem::path& dir)
      : previous_(std::filesystem::current_path()) {
    std::filesystem::current_path(dir);
  }
  ~WorkingDirectory() {
    std::error_code ignored;
    std::filesystem::current_path(previous_, ignored);
  }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;

 private:
  std::filesystem::path previous_;
};

// The lines of a text file, each without its '\n' (an unterminated last line is dropped).
inline std::vector<std::string> file_lines(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::string line;
  for (const char c : read_file(path)) {
    if (c == '\n') {
      lines.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  return lines;
}

// The names of the entries in `dir` (hidden ones too), sorted.
inline std::vector<std::string> entries_of(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Writes bytes as they are (no atomic rename: tests build inputs, not outputs).
inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace rbm::test

// Expects `statement` to throw rbm::InputError with a message containing each of the strings
// that follow it, e.g. EXPECT_INPUT_ERROR(read_npy(p), p.string(), "bad magic").
#define EXPECT_INPUT_ERROR(statement, ...)                                              \
  do {                                                                                  \
    try {                                                                               \
      statement;                                                                        \
      ADD_FAILURE() << #statement " did not throw InputError";                          \
    } catch (const ::rbm::InputError& error) {                                          \
      for (const std::string& part : std::initializer_list<std::string>{__VA_ARGS__}) { \
        EXPECT_NE(std::string_view(error.what()).find(part), std::string_view::npos)    \
            << "message \"" << error.what() << "\" lacks \"" << part << "\"";           \
      }                                                                                 \
    }                                                                                   \
  } while (0)
