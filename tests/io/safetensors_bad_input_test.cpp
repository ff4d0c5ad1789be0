// Malformed safetensors input: each case must throw lethe::Error naming the file (and tensor),
// and a fuzz pass over ≥ 1000 corrupted variants must never crash (run under ASan too).
#include <cstdio>
#include <filesystem>
#include <random>

#include "engine/io/safetensors.h"
#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;
using test::st_bytes;

// Parses bytes as if they were a file called "model.safetensors"; the buffer is an exact-size
// heap copy so an out-of-bounds read is caught by ASan.
SafetensorsFile parse(const std::string& bytes) {
  auto buf = std::shared_ptr<char[]>(new char[bytes.size() + 1]);
  std::memcpy(buf.get(), bytes.data(), bytes.size());
  return SafetensorsFile::from_memory(std::shared_ptr<const void>(buf, buf.get()), buf.get(),
                                      bytes.size(), "model.safetensors");
}

void expect_bad(const std::string& header, const std::string& data,
                std::initializer_list<std::string> parts) {
  expect_error([&] { parse(st_bytes(header, data)); }, parts);
}

const std::string k64(64, 'x');

TEST(SafetensorsBadInput, FileShorterThanEightBytes) {
  const std::string dir = test::temp_dir("short");
  for (size_t n : {0, 1, 7}) {
    const std::string path = dir + "/s" + std::to_string(n) + ".safetensors";
    test::write_bytes(path, std::string(n, '\x01'));
    expect_error([&] { SafetensorsFile::open(path); }, {path, "shorter than the 8-byte"});
  }
}

TEST(SafetensorsBadInput, MissingFileAndDirectory) {
  expect_error([] { SafetensorsFile::open("/nonexistent/x.safetensors"); },
               {"/nonexistent/x.safetensors", "does not exist"});
  const std::string dir = test::temp_dir("isdir");
  expect_error([&] { SafetensorsFile::open(dir); }, {dir, "not a regular file"});
}

TEST(SafetensorsBadInput, HeaderLength) {
  expect_error([] { parse(test::u64_le(100'000'001) + "{}"); },
               {"model.safetensors", "header length 100000001", "limit"});
  expect_error([] { parse(test::u64_le(~uint64_t{0})); }, {"header length"});
  expect_error([] { parse(test::u64_le(10) + "{}"); },
               {"model.safetensors", "header length 10 runs past the end", "10 bytes"});
}

TEST(SafetensorsBadInput, HeaderNotJsonOrNotObject) {
  expect_bad("{\"a\": ", "", {"model.safetensors: header: invalid JSON", "line 1"});
  expect_bad("{}\n{x", "", {"invalid JSON at line 2"});
  expect_bad("{\"\xff\xfe\": 1}", "", {"model.safetensors", "invalid JSON"});  // not UTF-8
  expect_bad("{\"a\xc3\": 1}", "", {"invalid JSON"});                          // truncated UTF-8
  expect_bad("[1, 2]", "", {"model.safetensors: header is not a JSON object"});
  expect_bad("", "", {"invalid JSON"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": )" + std::string(5000, '[') +
                 std::string(5000, ']') + R"(, "data_offsets": [0, 0]}})",
             "", {"model.safetensors: header", "nested deeper"});
  expect_bad("     ", "", {"invalid JSON"});
}

TEST(SafetensorsBadInput, EntryFields) {
  const std::string w = "model.safetensors: tensor 'w'";
  expect_bad(R"({"w": 3})", "", {w, "not a JSON object"});
  expect_bad(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "", {w, "no 'dtype'"});
  expect_bad(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "", {w, "no 'shape'"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1]}})", "", {w, "no 'data_offsets'"});
  expect_bad(R"({"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", "",
             {w, "'dtype' is not a string"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "",
             {w, "'shape' is not an array"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "",
             {w, "not an integer"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "",
             {w, "negative dimension"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "",
             {w, "[begin, end]"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", "",
             {w, "[begin, end]"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", "",
             {w, "[begin, end]"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": {"a": 0}}})", "",
             {w, "[begin, end]"});
  expect_bad(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", "",
             {w, "[8, 4] end before they begin"});
}

TEST(SafetensorsBadInput, UnknownDtype) {
  for (const char* dt : {"I8", "F8_E4M3", "f32", "", "U16", "C64"})
    expect_bad(
        std::string(R"({"w": {"dtype": ")") + dt + R"(", "shape": [1], "data_offsets": [0, 1]}})",
        "x", {"model.safetensors: tensor 'w'", std::string("unsupported dtype '") + dt});
}

TEST(SafetensorsBadInput, ShapeProductOverflows) {
  expect_bad(
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})", "",
      {"tensor 'w'", "too many bytes"});
  expect_bad(R"({"w": {"dtype": "F64", "shape": [1152921504606846976], "data_offsets": [0, 0]}})",
             "", {"tensor 'w'", "too many bytes"});
  expect_bad(R"({"w": {"dtype": "U8", "shape": [99999999999999999999], "data_offsets": [0, 0]}})",
             "", {"tensor 'w'"});
}

TEST(SafetensorsBadInput, WrongByteCount) {
  std::string h =
      R"({"layers.3.fc1.weight": {"dtype": "F16", "shape": [4, 8], "data_offsets": [0, 40]}})";
  expect_bad(h, std::string(40, 'x'),
             {"model.safetensors: tensor 'layers.3.fc1.weight': data_offsets [0, 40] but F16 "
              "[4,8] needs 64 bytes"});
  expect_bad(R"({"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}})", "",
             {"tensor 's'", "F32 [] needs 4 bytes"});
}

TEST(SafetensorsBadInput, HolesOverlapsAndFileEnd) {
  const std::string a32 = R"("a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]})";
  expect_bad(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [8, 40]}})",
             std::string(40, 'x'), {"tensor 'a'", "hole", "start at 0"});
  expect_bad("{" + a32 + R"(, "b": {"dtype": "F32", "shape": [8], "data_offsets": [40, 72]}})",
             std::string(72, 'x'), {"tensor 'b'", "[40, 72]", "hole after tensor 'a'"});
  expect_bad("{" + a32 + R"(, "b": {"dtype": "F32", "shape": [8], "data_offsets": [16, 48]}})",
             std::string(48, 'x'), {"tensor 'b'", "overlap tensor 'a'"});
  expect_bad("{" + a32 + R"(, "b": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})",
             std::string(32, 'x'), {"overlap"});
  expect_bad("{" + a32 + "}", std::string(31, 'x'),
             {"model.safetensors: tensor 'a' ends at data offset 32", "only 31 bytes"});
  expect_bad("{" + a32 + "}", std::string(33, 'x'), {"model.safetensors", "trailing garbage"});
  expect_bad("{}", "x", {"model.safetensors", "1 bytes of trailing garbage"});
}

TEST(SafetensorsBadInput, ZeroSizedTensorsMayShareAnOffset) {
  // Valid: empty tensors occupy no bytes, so several can sit at the same offset.
  auto f = parse(st_bytes(
      R"({"e1": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
          "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "e2": {"dtype": "I64", "shape": [3, 0], "data_offsets": [4, 4]},
          "e0": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}})",
      "abcd"));
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors().front().name, "e0");
}

TEST(SafetensorsBadInput, DuplicateNames) {
  expect_bad(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                 "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
             "xy", {"model.safetensors", "duplicate key 'w'"});
  expect_bad(R"({"__metadata__": {"a": "1", "a": "2"}})", "", {"duplicate key 'a'"});
  expect_bad(R"({"w": {"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})", "x",
             {"duplicate key 'dtype'"});
}

TEST(SafetensorsBadInput, Metadata) {
  expect_bad(R"({"__metadata__": ["format", "pt"]})", "",
             {"model.safetensors: __metadata__ is not a JSON object"});
  expect_bad(R"({"__metadata__": {"format": "pt", "n": 3}})", "",
             {"model.safetensors: __metadata__ value of 'n' is not a string"});
  expect_bad(R"({"__metadata__": {"nested": {"a": "b"}}})", "", {"'nested' is not a string"});
  auto ok = parse(st_bytes(R"({"__metadata__": {}})", ""));
  EXPECT_TRUE(ok.metadata().empty());
}

TEST(SafetensorsBadInput, TruncatedRealFileOnDisk) {
  const std::string full = test::read_bytes(test::fixture("dtypes.safetensors"));
  const std::string dir = test::temp_dir("trunc");
  for (size_t n : {size_t{8}, size_t{9}, full.size() / 2, full.size() - 1}) {
    const std::string path = dir + "/t.safetensors";
    test::write_bytes(path, full.substr(0, n));
    expect_error([&] { SafetensorsFile::open(path); }, {path});
  }
}

// Loads a variant, which must either parse (then every tensor's bytes are read, so ASan sees any
// out-of-range pointer) or throw lethe::Error. Returns whether it parsed.
bool load_or_error(const std::string& bytes, int* errors) {
  try {
    SafetensorsFile f = parse(bytes);
    uint64_t sum = 0;
    for (const auto& t : f.tensors())
      for (uint64_t i = 0; i < t.nbytes(); ++i) sum += static_cast<const uint8_t*>(t.data)[i];
    ::testing::Test::RecordProperty("checksum", static_cast<int>(sum & 0xff));
    return true;
  } catch (const lethe::Error&) {
    ++*errors;
    return false;
  }
  // Any other exception type escapes and fails the test.
}

TEST(SafetensorsBadInput, FuzzCorruptedVariantsLoadOrThrow) {
  float w[6] = {1, 2, 3, 4, 5, 6};
  int32_t ids[3] = {7, 8, 9};
  uint16_t h[2] = {0x3c00, 0xc000};
  const std::string path = test::temp_dir("fuzz") + "/base.safetensors";
  write_safetensors(path,
                    {{"decoder.layers.0.fc1.weight", DType::f32, {2, 3}, w},
                     {"ids", DType::i32, {3}, ids},
                     {"h", DType::f16, {2}, h},
                     {"s", DType::bf16, {}, h}},
                    {{"format", "pt"}, {"k", "v"}});
  const std::string base = test::read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(base[i]);
  const size_t header_end = 8 + n;
  ASSERT_LT(header_end, base.size());
  int errors = 0, loaded = 0, variants = 0;
  auto run = [&](const std::string& v) {
    ++variants;
    loaded += load_or_error(v, &errors);
  };
  ASSERT_TRUE(load_or_error(base, &errors));

  // 1. Truncation at every length through the header and into the data.
  for (size_t n = 0; n < base.size(); ++n) run(base.substr(0, n));
  // 2. Byte flips: every position, several replacement bytes.
  const uint8_t repl[] = {0x00, 0xff, '"', '{', '}', ']', ',', ':', '9', '-', ' ', 0x80};
  for (size_t pos = 0; pos < base.size(); ++pos)
    for (size_t r = 0; r < sizeof(repl); r += (pos < header_end ? 1 : 6)) {
      std::string v = base;
      v[pos] = static_cast<char>(repl[r]);
      run(v);
    }
  // 3. Random garbage in the header region (deterministic seed).
  std::mt19937_64 rng(1234);
  for (int k = 0; k < 600; ++k) {
    std::string v = base;
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i)
      v[8 + rng() % (header_end - 8)] = static_cast<char>(rng() & 0xff);
    run(v);
  }
  // 4. Random header lengths and random whole headers.
  for (int k = 0; k < 200; ++k) {
    std::string v = base;
    uint64_t n = rng() % (k < 100 ? base.size() + 16 : ~uint64_t{0});
    std::string len = test::u64_le(n);
    v.replace(0, 8, len);
    run(v);
    std::string junk(static_cast<size_t>(rng() % 64), '\0');
    for (auto& c : junk) c = "{}[]\":,0123456789.eE-+ tfnrulasF"[rng() % 33];
    run(test::u64_le(junk.size()) + junk);
  }
  EXPECT_GE(variants, 1000);
  EXPECT_GT(errors, variants / 2);  // most corruptions must be caught, not silently accepted
  RecordProperty("variants", variants);
  RecordProperty("loaded", loaded);
  std::printf("fuzz: %d variants, %d loaded, %d rejected with lethe::Error\n", variants, loaded,
              errors);
}

}  // namespace
}  // namespace lethe::io
