// JSON helpers: error positions, duplicate keys, atomic writes.
#include "engine/io/json.h"

#include <filesystem>

#include "engine/io/file_util.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;

TEST(Json, ParsesAndNamesErrorPositions) {
  EXPECT_EQ(parse_json(R"({"a": [1, 2]})", "x")["a"][1], 2);
  expect_error([] { parse_json("{\n\"a\": 1,\n\"b\": }", "cfg.json"); },
               {"cfg.json: invalid JSON at line 3, column 6 (byte 15)"});
  expect_error([] { parse_json("", "empty.json"); }, {"empty.json: invalid JSON"});
  expect_error([] { parse_json("{} x", "t.json"); }, {"t.json: invalid JSON at line 1"});
  expect_error([] { parse_json("/* c */ {}", "c.json"); }, {"c.json"});  // no comments
}

TEST(Json, RejectsDuplicateKeysAtAnyDepth) {
  expect_error([] { parse_json(R"({"a": 1, "a": 2})", "d.json"); }, {"d.json: duplicate key 'a'"});
  expect_error([] { parse_json(R"({"x": [{"k": 1, "k": 1}]})", "d.json"); }, {"duplicate key 'k'"});
  // The same key in sibling objects is fine.
  auto j = parse_json(R"({"x": {"k": 1}, "y": {"k": 2}, "z": [{"k": 3}, {"k": 4}]})", "ok");
  EXPECT_EQ(j["z"][1]["k"], 4);
}

TEST(Json, RejectsDeepNestingWithoutOverflowingTheStack) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_error([&] { parse_json(deep, "deep.json"); }, {"deep.json", "nested deeper than"});
  std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(parse_json(ok, "ok.json").is_array());
}

TEST(Json, ExcerptIsShort) {
  nlohmann::json big = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) big.push_back(i);
  std::string e = json_excerpt(big, 20);
  EXPECT_EQ(e, "[0,1,2,3,4,5,6,7,8,9...");
}

TEST(Json, PositionOf) {
  auto p = position_of("ab\ncd\nef", 7);
  EXPECT_EQ(p.line, 3u);
  EXPECT_EQ(p.column, 2u);
  EXPECT_EQ(position_of("abc", 100).column, 4u);
}

TEST(Json, WriteIsAtomicAndReadable) {
  const std::string dir = test::temp_dir("json");
  const std::string path = dir + "/a.json";
  write_json_file(path, nlohmann::json{{"k", "v"}});
  EXPECT_EQ(read_json_file(path)["k"], "v");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  expect_error([&] { write_json_file(dir + "/missing/a.json", nlohmann::json::object()); },
               {dir + "/missing/a.json"});
  expect_error([&] { write_json_file(path, nlohmann::json("\xff")); }, {path, "serialise"});
  EXPECT_EQ(read_json_file(path)["k"], "v");  // untouched by the failed write
  expect_error([&] { read_json_file(dir); }, {dir, "not a regular file"});
}

TEST(Json, AtomicWriterDiscardsUncommitted) {
  const std::string path = test::temp_dir("atomic") + "/f";
  write_file_atomic(path, "one");
  {
    AtomicFileWriter w(path);
    w.write("two");
  }  // destroyed without commit
  EXPECT_EQ(read_text_file(path), "one");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace lethe::io
