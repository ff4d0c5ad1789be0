// Every differentiable op has at least one row in the op table, so every backward is checked
// against finite differences (and, on a GPU, against the CPU). The ops are read from the public
// headers themselves: a new op without a row fails here.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "op_harness.h"
#include "tests/common/paths.h"

namespace lethe::testing {
namespace {

std::string read_header(const std::string& rel) {
  std::ifstream in(source_dir() + "/" + rel);
  EXPECT_TRUE(in.good()) << rel;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Names matched by `re` (group 1) in the text.
std::set<std::string> names(const std::string& text, const std::regex& re) {
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it)
    out.insert((*it)[1].str());
  return out;
}

// The identifier-like words of every row name ("views permute+slice+reshape" gives views,
// permute, slice, reshape).
std::set<std::string> row_words() {
  std::set<std::string> words;
  const std::regex word("([A-Za-z_][A-Za-z_0-9]*)");
  for (const auto& c : op_table())
    for (const auto& w : names(c.name, word)) words.insert(w);
  return words;
}

// Tensor-returning members of Tensor that are not ops: no graph node to check.
const std::map<std::string, std::string> kNotDifferentiable = {
    {"grad", "returns the accumulated gradient"},
    {"detach", "cuts the graph by definition"},
};

TEST(OpCoverage, EveryOpInTheHeadersHasAGradientCheckRow) {
  // Free functions of engine/ops.h: lines "Tensor name(".
  const auto free_ops = names(read_header("engine/ops.h"), std::regex(R"(\nTensor (\w+)\()"));
  // Members of Tensor: indented "Tensor name(...) const;" (static constructors are excluded by
  // their "static" keyword).
  const auto members =
      names(read_header("engine/tensor.h"), std::regex(R"(\n  Tensor (\w+)\([^;]*\) const;)"));
  // The parse itself must find the ops (a header reformat must not turn this into a no-op).
  EXPECT_GE(free_ops.size(), 30u);
  EXPECT_GE(members.size(), 12u);
  EXPECT_TRUE(free_ops.count("sum_to_shape") && free_ops.count("attention"));
  EXPECT_TRUE(members.count("view") && members.count("squeeze") && members.count("to"));

  const auto words = row_words();
  std::vector<std::string> missing;
  for (const auto* set : {&free_ops, &members})
    for (const auto& op : *set)
      if (!words.count(op) && !kNotDifferentiable.count(op)) missing.push_back(op);
  EXPECT_TRUE(missing.empty()) << "ops without an op-table row (tests/unit/*_cases.cpp): "
                               << ::testing::PrintToString(missing);
  for (const auto& [op, why] : kNotDifferentiable)
    EXPECT_TRUE(members.count(op)) << op << " is exempt (" << why << ") but no longer declared";
}

}  // namespace
}  // namespace lethe::testing
