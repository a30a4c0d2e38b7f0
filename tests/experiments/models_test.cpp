#include <gtest/gtest.h>

#include "experiments/models/model.h"
#include "experiments/models/sequence.h"
#include "store/errors.h"

namespace tb {
namespace {

TEST(ModelsTest, ParameterCountsMatchTheReports) {
  const std::map<std::string, int64_t> expected = {
      {"cnn2464", 2464},
      // 784*512+512 + 512*256+256 + 256*128+128 + 128*64+64 + 64*10+10
      {"mega", 575050},
      // 784*512+512 + 512*128+128 + 128*10+10
      {"wide", 468874},
      // 784*256+256 + 256*256+256 + 256*128+128 + 128*10+10
      {"deep", 300938},
      // 784*2048+2048 + 2048*10+10
      {"superwide", 1628170},
      // 784*64+64 + 5*(64*64+64) + 64*10+10
      {"verydeep", 71690},
  };
  EXPECT_EQ(ModelNames().size(), expected.size() + SequenceFamilies().size());
  for (const auto& [arch, count] : expected) {
    EXPECT_EQ(CountParameters(*MakeModel(ModelSpec{arch})), count) << arch;
  }
}

TEST(ModelsTest, ForwardShapesFeaturesAndLayerNames) {
  auto x = torch::rand({3, 1, 28, 28});
  for (const auto& arch : ModelNames()) {
    for (const auto& act : ActivationNames()) {
      auto m = MakeModel(ModelSpec{arch, act, "xavier_uniform"});
      EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{3, 10})) << arch;
      EXPECT_EQ(m->Features(x).size(1), m->FeatureWidth()) << arch;
      EXPECT_EQ(m->HiddenActivations(x).size(), m->HiddenLayerNames().size()) << arch;
    }
  }
  EXPECT_EQ(MakeModel(ModelSpec{"superwide"})->FeatureWidth(), 2048);
  EXPECT_EQ(MakeModel(ModelSpec{"verydeep"})->HiddenLayerNames().back(), "fc6");
}

TEST(ModelsTest, InitsAreSeededAndCloneIsDeep) {
  for (const auto& init : InitNames()) {
    torch::manual_seed(3);
    auto a = MakeModel(ModelSpec{"cnn2464", "relu", init});
    torch::manual_seed(3);
    auto b = MakeModel(ModelSpec{"cnn2464", "relu", init});
    EXPECT_TRUE(torch::equal(a->head->weight, b->head->weight)) << init;
  }
  auto m = MakeModel(ModelSpec{"wide"});
  auto c = CloneModel(m);
  EXPECT_TRUE(torch::equal(m->head->weight, c->head->weight));
  torch::NoGradGuard g;
  c->head->weight.add_(1.0);
  EXPECT_FALSE(torch::equal(m->head->weight, c->head->weight));
}

TEST(ModelsTest, UnknownNamesListTheAcceptedOnes) {
  try {
    MakeModel(ModelSpec{"resnet"});
    FAIL();
  } catch (const BadInput& e) {
    EXPECT_EQ(std::string(e.what()),
              "architecture 'resnet': unknown (expected one of cfc, cnn2464, deep, liquid_s4, lstm, mega, ssm, superwide, verydeep, wide, xlstm)");
  }
  EXPECT_THROW(MakeModel(ModelSpec{"wide", "swish"}), BadInput);
  EXPECT_THROW(MakeModel(ModelSpec{"wide", "relu", "orthogonal"}), BadInput);
}

}  // namespace
}  // namespace tb
