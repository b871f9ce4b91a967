// Whole-file I/O: the project's single writer of output files (atomic: temporary file, fsync,
// rename, fsync of the directory) and the matching whole-file reader.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace rbm {

// Replaces `path` with `bytes` so that a reader (or a crash) sees either the old file or the whole
// new one, never a torn one. Throws InputError naming the path and strerror(errno); the temporary
// file (.NAME.tmp.PID in the same directory) is removed on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The whole content of `path`. Throws InputError naming the path and strerror(errno).
std::string read_file(const std::filesystem::path& path);

}  // namespace rbm
