// Which filesystem a path lives on, for the one question the store asks: is it a network
// filesystem, where SQLite's WAL mode (its shared-memory index, its locks) is unsafe? SQLite's
// documentation: "WAL does not work over a network filesystem". The store refuses such a path
// rather than risk a corrupted runs.db; a suite across machines writes one store per shard.
//
//   if (auto fs = tb::NetworkFilesystem("results/runs.db")) ...  // "nfs", "cifs", ...
#pragma once

#include <optional>
#include <string>

namespace tb {

// The name of the network filesystem whose statfs(2) magic number is `magic` ("nfs", "cifs",
// "smb", "smb2", "ceph", "lustre", "gpfs", "afs"), or nullopt for any other.
std::optional<std::string> NetworkFilesystemName(long magic);

// The network filesystem holding `path` (a file that may not exist yet: its nearest existing
// parent directory is asked), or nullopt for a local one or when statfs fails.
std::optional<std::string> NetworkFilesystem(const std::string& path);

}  // namespace tb
