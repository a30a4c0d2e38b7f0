#include "store/filesystem.h"

#include <sys/vfs.h>

#include <filesystem>
#include <system_error>

namespace tb {

std::optional<std::string> NetworkFilesystemName(long magic) {
  // The magic numbers of linux/magic.h and the filesystems' own headers. Not 9p or virtiofs:
  // they carry a virtual machine's or a container's own disk, one host, where WAL works.
  switch (static_cast<unsigned long>(magic) & 0xFFFFFFFFul) {
    case 0x6969ul:
      return "nfs";
    case 0xFF534D42ul:
      return "cifs";
    case 0x517Bul:
      return "smb";
    case 0xFE534D42ul:
      return "smb2";
    case 0x00C36400ul:
      return "ceph";
    case 0x0BD00BD0ul:
      return "lustre";
    case 0x47504653ul:
      return "gpfs";
    case 0x5346414Ful:
      return "afs";
    default:
      return std::nullopt;
  }
}

std::optional<std::string> NetworkFilesystem(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec) return std::nullopt;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  struct statfs info {};
  if (statfs(p.c_str(), &info) != 0) return std::nullopt;
  return NetworkFilesystemName(static_cast<long>(info.f_type));
}

}  // namespace tb
