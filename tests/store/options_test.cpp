#include "store/options.h"

#include <limits>

#include <gtest/gtest.h>

#include "store/errors.h"

namespace tb {
namespace {

struct Sample {
  int64_t steps = 100;
  double lr = 1e-3;
  bool bias = true;
  std::string head = "keep";
  std::vector<int64_t> classes{0, 1};
  void Bind(Options& o) {
    o.Add("steps", &steps, "steps");
    o.Add("lr", &lr, "learning rate");
    o.Add("bias", &bias, "copy bias");
    o.Add("head", &head, "head handling", {"keep", "copy_row"});
    o.Add("classes", &classes, "classes");
  }
};

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const BadInput& e) {
    return e.what();
  }
  return "";
}

TEST(OptionsTest, ParsesTextAndJsonIntoTypedFields) {
  Sample s;
  Options o;
  s.Bind(o);
  o.SetText("steps", "50");
  o.SetText("lr", "0.01");
  o.SetText("bias", "false");
  o.SetText("head", "copy_row");
  o.SetText("classes", "2,3,4");
  EXPECT_EQ(s.steps, 50);
  EXPECT_DOUBLE_EQ(s.lr, 0.01);
  EXPECT_FALSE(s.bias);
  EXPECT_EQ(s.head, "copy_row");
  EXPECT_EQ(s.classes, (std::vector<int64_t>{2, 3, 4}));
  o.Apply(nlohmann::json::parse(R"({"steps": 7, "classes": [5], "bias": true})"));
  EXPECT_EQ(s.steps, 7);
  EXPECT_EQ(s.classes, std::vector<int64_t>{5});
  EXPECT_EQ(o.ToJson().dump(), R"({"bias":true,"classes":[5],"head":"copy_row","lr":0.01,"steps":7})");
}

TEST(OptionsTest, ErrorsNameTheKeyTheValueAndWhatWasExpected) {
  Sample s;
  Options o;
  s.Bind(o);
  EXPECT_EQ(ErrorOf([&] { o.SetText("stesp", "5"); }),
            "unknown option 'stesp' (accepted: bias, classes, head, lr, steps)");
  EXPECT_EQ(ErrorOf([&] { o.SetText("steps", "5x"); }), "steps=5x: expected an integer");
  EXPECT_EQ(ErrorOf([&] { o.SetText("lr", "fast"); }), "lr=fast: expected a number");
  EXPECT_EQ(ErrorOf([&] { o.SetText("bias", "maybe"); }), "bias=maybe: expected true or false");
  EXPECT_EQ(ErrorOf([&] { o.SetText("head", "drop"); }), "head=drop: expected one of keep, copy_row");
  EXPECT_EQ(ErrorOf([&] { o.Set("steps", 1.5); }), "steps=1.5: expected an integer");
  EXPECT_EQ(ErrorOf([&] { o.SetText("classes", "1,,2"); }), "classes=1,,2: expected a list of integers such as 0,1,2");
  EXPECT_EQ(s.steps, 100);  // nothing changed by the failed sets
  EXPECT_EQ(ErrorOf([] { SplitAssignment("novalue"); }), "'novalue': expected key=value");
}

// Review 19.4 and 19.10: nan and inf stored as null and hashed alike; "0,1," taken for "0,1".
TEST(OptionsTest, NonFiniteNumbersAndEmptyListItemsAreRefused) {
  Sample s;
  Options o;
  s.Bind(o);
  for (const char* text : {"nan", "inf", "-inf", "NaN", "infinity", "1e999"}) {
    const std::string error = ErrorOf([&] { o.SetText("lr", text); });
    EXPECT_NE(error.find(std::string("lr=") + text + ": expected a"), std::string::npos) << error;
  }
  EXPECT_EQ(ErrorOf([&] { o.Set("lr", std::numeric_limits<double>::infinity()); }), "lr=null: expected a finite number");
  EXPECT_EQ(ErrorOf([&] { o.SetText("lr", "nan"); }), "lr=nan: expected a finite number");
  EXPECT_DOUBLE_EQ(s.lr, 1e-3);
  for (const char* text : {"0,1,", ",0,1", "", ","}) {
    EXPECT_EQ(ErrorOf([&] { o.SetText("classes", text); }),
              std::string("classes=") + text + ": expected a list of integers such as 0,1,2");
  }
  EXPECT_EQ(s.classes, (std::vector<int64_t>{0, 1}));
}

TEST(OptionsTest, HelpListsEveryOptionWithItsDefault) {
  Sample s;
  Options o;
  s.Bind(o);
  const std::string help = o.Help();
  EXPECT_NE(help.find("steps"), std::string::npos);
  EXPECT_NE(help.find("(keep|copy_row)"), std::string::npos);
  EXPECT_NE(help.find("100"), std::string::npos);
}

}  // namespace
}  // namespace tb
