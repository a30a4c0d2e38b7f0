// The store's network-filesystem check (store/filesystem.h): the magic numbers it knows, a local
// directory passes, and a store is opened only off a network filesystem.
#include "store/filesystem.h"

#include <linux/magic.h>

#include <initializer_list>

#include <gtest/gtest.h>

#include "store/run_store.h"
#include "tests/test_util.h"

namespace tb {
namespace {

TEST(FilesystemTest, NamesNetworkFilesystemsByMagic) {
  EXPECT_EQ(NetworkFilesystemName(NFS_SUPER_MAGIC), "nfs");
  EXPECT_EQ(NetworkFilesystemName(SMB_SUPER_MAGIC), "smb");
  EXPECT_EQ(NetworkFilesystemName(static_cast<long>(0xFF534D42u)), "cifs");
  // statfs's f_type is a signed long: a magic with the top bit set may come sign-extended.
  EXPECT_EQ(NetworkFilesystemName(static_cast<long>(static_cast<int32_t>(0xFF534D42u))), "cifs");
  for (long local : std::initializer_list<long>{EXT4_SUPER_MAGIC, TMPFS_MAGIC, BTRFS_SUPER_MAGIC, XFS_SUPER_MAGIC,
                                               OVERLAYFS_SUPER_MAGIC, V9FS_MAGIC}) {
    EXPECT_FALSE(NetworkFilesystemName(local).has_value()) << std::hex << local;
  }
}

TEST(FilesystemTest, ALocalStoreOpensAndAMissingFileAsksItsParent) {
  testing::TempDir dir;
  EXPECT_FALSE(NetworkFilesystem(dir.path()).has_value());
  EXPECT_FALSE(NetworkFilesystem(dir / "not/yet/runs.db").has_value());
  RunStore store(dir / "runs.db");
  EXPECT_EQ(store.SchemaVersion(), RunStore::kSchemaVersion);
}

}  // namespace
}  // namespace tb
