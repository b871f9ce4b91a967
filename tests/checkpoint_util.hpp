// Helpers for tests that build or damage checkpoints (host/checkpoint.hpp) by hand.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "host/atomic_file.hpp"
#include "host/sha256.hpp"

namespace rbm::test {

inline nlohmann::json read_json(const std::filesystem::path& path) {
  return nlohmann::json::parse(read_file(path));
}

inline void write_json(const std::filesystem::path& path, const nlohmann::json& json) {
  write_file_atomic(path, json.dump(2) + "\n");
}

// Records the current SHA-256 of dir/name in dir/run.json, so that a file replaced by hand
// belongs to the checkpoint again (to reach the checks behind the checksum).
inline void rehash(const std::filesystem::path& dir, const std::string& name) {
  nlohmann::json run = read_json(dir / "run.json");
  run["checkpoint"]["sha256"][name] = sha256_hex(read_file(dir / name));
  write_json(dir / "run.json", run);
}

}  // namespace rbm::test
