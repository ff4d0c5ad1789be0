// Reading reference-written safetensors fixtures, and lethe's writer (round trip, byte layout,
// atomic replacement). Expected names/shapes/values come from tools/fixtures/make_io_fixtures.py.
#include "engine/io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "tests/io/test_util.h"

namespace lethe::io {
namespace {

using test::expect_error;
using test::fixture;

// Element i of a tensor as a double (unaligned-safe; the unpadded fixture is misaligned).
double value_at(const TensorInfo& t, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(t.data) + i * dtype_size(t.dtype);
  auto load = [&](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (t.dtype) {
    case DType::f16: return f16_to_f32(load(uint16_t{}));
    case DType::bf16: return bf16_to_f32(load(uint16_t{}));
    case DType::f32: return load(float{});
    case DType::f64: return load(double{});
    case DType::i32: return load(int32_t{});
    case DType::i64: return static_cast<double>(load(int64_t{}));
    case DType::u8:
    case DType::boolean: return *p;
  }
  return NAN;
}

int64_t int_at(const TensorInfo& t, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(t.data) + i * dtype_size(t.dtype);
  int64_t v = 0;
  if (t.dtype == DType::i64) std::memcpy(&v, p, 8);
  return v;
}

nlohmann::json expected_files() {
  std::ifstream in(fixture("safetensors_expected.json"));
  return nlohmann::json::parse(in);
}

void check_against_expected(const SafetensorsFile& f, const nlohmann::json& e) {
  SCOPED_TRACE(e["file"].get<std::string>());
  EXPECT_EQ(f.header_size(), e["header_size"].get<uint64_t>());
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(f.metadata(), e["metadata"].get<StringMap>());
  ASSERT_EQ(f.tensors().size(), e["tensors"].size());
  for (const auto& et : e["tensors"]) {
    const std::string name = et["name"];
    SCOPED_TRACE(name);
    const TensorInfo* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->name, name);
    EXPECT_STREQ(safetensors_dtype_name(t->dtype), et["dtype"].get<std::string>().c_str());
    EXPECT_EQ(t->shape, et["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t->begin, et["data_offsets"][0].get<uint64_t>());
    EXPECT_EQ(t->end, et["data_offsets"][1].get<uint64_t>());
    const auto& values = et["values"];
    ASSERT_EQ(t->numel(), static_cast<int64_t>(values.size()));
    EXPECT_EQ(t->nbytes(), values.size() * dtype_size(t->dtype));
    EXPECT_EQ(static_cast<const uint8_t*>(t->data),
              static_cast<const uint8_t*>(f.tensors()[0].data) - f.tensors()[0].begin + t->begin);
    for (size_t i = 0; i < values.size(); ++i) {
      if (t->dtype == DType::i64) {
        EXPECT_EQ(int_at(*t, i), values[i].get<int64_t>()) << "element " << i;
      } else {
        double want = values[i].get<double>();
        double got = value_at(*t, i);
        // Exact: every fixture value is representable in its dtype (torch rounded it).
        EXPECT_TRUE(got == want || (std::isnan(got) && std::isnan(want)))
            << "element " << i << ": " << got << " vs " << want;
        if (want == 0.0) {
          EXPECT_EQ(std::signbit(got), std::signbit(want)) << "element " << i;
        }
      }
    }
  }
  // tensors() is in data order.
  for (size_t i = 1; i < f.tensors().size(); ++i)
    EXPECT_LE(f.tensors()[i - 1].begin, f.tensors()[i].begin);
}

TEST(Safetensors, ReadsEveryReferenceFixture) {
  const auto files = expected_files();
  // Exactly the files tools/fixtures/make_io_fixtures.py wrote: a truncated expectation fails.
  ASSERT_EQ(files.size(), 3u);
  size_t tensors = 0;
  for (const auto& e : files) tensors += e["tensors"].size();
  EXPECT_EQ(tensors, 14u);
  for (const auto& e : files) {
    SafetensorsFile f = SafetensorsFile::open(fixture(e["file"]));
    check_against_expected(f, e);
  }
}

TEST(Safetensors, ScalarAndEmptyTensors) {
  SafetensorsFile f = SafetensorsFile::open(fixture("dtypes.safetensors"));
  const TensorInfo& scalar = f.at("scalar");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(scalar.nbytes(), 4u);
  const TensorInfo& empty = f.at("empty");
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.nbytes(), 0u);
  EXPECT_EQ(f.at("flags").dtype, DType::boolean);
  EXPECT_EQ(f.at("u8").dtype, DType::u8);
  EXPECT_EQ(f.at("bf16").dtype, DType::bf16);
}

TEST(Safetensors, MissingNameIsAnErrorNamingFileAndTensor) {
  SafetensorsFile f = SafetensorsFile::open(fixture("dtypes.safetensors"));
  EXPECT_EQ(f.find("nope"), nullptr);
  expect_error([&] { f.at("nope"); }, {"dtypes.safetensors", "'nope'"});
}

TEST(Safetensors, KeepaliveOutlivesTheFileObject) {
  std::shared_ptr<const void> keep;
  const float* data = nullptr;
  {
    SafetensorsFile f = SafetensorsFile::open(fixture("dtypes.safetensors"));
    keep = f.keepalive();
    data = static_cast<const float*>(f.at("scalar").data);
  }
  float v;
  std::memcpy(&v, data, 4);  // still mapped: ASan/segfault would catch an unmapped read
  EXPECT_EQ(v, 3.5f);
}

TEST(Safetensors, PrefetchLeavesBytesUnchanged) {
  SafetensorsFile f = SafetensorsFile::open(fixture("unpadded.safetensors"));  // misaligned data
  const TensorInfo& z = f.at("zeta");
  f.prefetch(z);
  for (const auto& t : f.tensors()) f.prefetch(t);
  EXPECT_EQ(value_at(z, 0), 1.25);
  SafetensorsFile d = SafetensorsFile::open(fixture("dtypes.safetensors"));
  d.prefetch(d.at("empty"));
  d.prefetch(d.at("f32"));
  EXPECT_EQ(value_at(d.at("f32"), 0), 1.5);
}

TEST(Safetensors, RewriteInFileOrderReproducesReferenceBytes) {
  // The Rust writer puts __metadata__ first, then tensors in data order, compact JSON padded with
  // spaces. Writing the same tensors in the same order must give the identical file.
  const std::string ref = fixture("dtypes.safetensors");
  SafetensorsFile f = SafetensorsFile::open(ref);
  std::vector<TensorToWrite> out;
  for (const auto& t : f.tensors()) out.push_back({t.name, t.dtype, t.shape, t.data});
  const std::string path = test::temp_dir("rewrite") + "/dtypes.safetensors";
  write_safetensors(path, out, f.metadata());
  EXPECT_EQ(test::read_bytes(path), test::read_bytes(ref));
}

std::vector<TensorToWrite> sample_tensors(std::vector<std::vector<uint8_t>>& storage) {
  std::vector<TensorToWrite> ts = {
      {"b.weight", DType::f16, {2, 3}, nullptr}, {"a", DType::f32, {}, nullptr},
      {"empty", DType::bf16, {0, 5}, nullptr},   {"ids", DType::i64, {3}, nullptr},
      {"mask", DType::boolean, {7}, nullptr},    {"bytes", DType::u8, {1, 1, 3}, nullptr},
      {"d", DType::f64, {2}, nullptr},           {"i", DType::i32, {2, 2}, nullptr},
      {"bf", DType::bf16, {5}, nullptr},
  };
  storage.clear();
  uint8_t seed = 1;
  for (auto& t : ts) {
    size_t n = dtype_size(t.dtype);
    for (auto d : t.shape) n *= static_cast<size_t>(d);
    storage.emplace_back(n);
    for (auto& b : storage.back()) {
      seed = static_cast<uint8_t>(seed * 13 + 7);
      b = t.dtype == DType::boolean ? seed & 1 : seed;
    }
    t.data = n ? storage.back().data() : nullptr;
  }
  return ts;
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  std::vector<std::vector<uint8_t>> storage;
  auto ts = sample_tensors(storage);
  const std::string path = test::temp_dir("roundtrip") + "/rt.safetensors";
  write_safetensors(path, ts, {{"format", "pt"}, {"origin", "lethe"}});
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorInfo* found = f.find(ts[i].name);  // laid out in the reference order, not ours
    ASSERT_NE(found, nullptr) << ts[i].name;
    const TensorInfo& t = *found;
    EXPECT_EQ(t.name, ts[i].name);
    EXPECT_EQ(t.dtype, ts[i].dtype);
    EXPECT_EQ(t.shape, ts[i].shape);
    ASSERT_EQ(t.nbytes(), storage[i].size());
    if (!storage[i].empty()) {
      EXPECT_EQ(std::memcmp(t.data, storage[i].data(), storage[i].size()), 0) << t.name;
    }
  }
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("origin"), "lethe");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// The reference writer (the safetensors package) wrote dtypes.safetensors from a dict of mixed
// dtypes. Given the same tensors in reverse order, lethe's writer must lay them out identically:
// same offsets, byte-identical data section.
TEST(Safetensors, WriterLaysOutTensorsAsTheReferenceWriter) {
  for (const char* file : {"dtypes.safetensors"}) {
    SCOPED_TRACE(file);
    SafetensorsFile ref = SafetensorsFile::open(fixture(file));
    ASSERT_GE(ref.tensors().size(), 2u);
    std::vector<TensorToWrite> ts;
    for (const auto& t : ref.tensors()) ts.push_back({t.name, t.dtype, t.shape, t.data});
    std::reverse(ts.begin(), ts.end());
    const std::string path = test::temp_dir("ref_order") + "/o.safetensors";
    write_safetensors(path, ts, ref.metadata());
    SafetensorsFile got = SafetensorsFile::open(path);
    ASSERT_EQ(got.tensors().size(), ref.tensors().size());
    for (size_t i = 0; i < ref.tensors().size(); ++i) {
      EXPECT_EQ(got.tensors()[i].name, ref.tensors()[i].name) << "tensor #" << i;
      EXPECT_EQ(got.tensors()[i].begin, ref.tensors()[i].begin) << ref.tensors()[i].name;
      EXPECT_EQ(got.tensors()[i].end, ref.tensors()[i].end) << ref.tensors()[i].name;
    }
    const std::string rb = test::read_bytes(fixture(file)), gb = test::read_bytes(path);
    EXPECT_EQ(gb.substr(got.data_start()), rb.substr(ref.data_start())) << "data sections differ";
  }
}

TEST(Safetensors, WrittenHeaderIsPaddedJsonWithFormatPt) {
  // Independent byte-level check of what the writer produces (no lethe reader involved).
  std::vector<std::vector<uint8_t>> storage;
  auto ts = sample_tensors(storage);
  const std::string path = test::temp_dir("layout") + "/l.safetensors";
  write_safetensors(path, ts, {{"origin", "x"}});
  const std::string bytes = test::read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header[header.find_last_not_of(' ')], '}');  // JSON, then only space padding
  nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "pt");  // added when the caller gives none
  EXPECT_EQ(j["__metadata__"]["origin"], "x");
  // Walk the tensors in data order (the writer's layout order is checked against the reference
  // writer in WriterLaysOutTensorsAsTheReferenceWriter): contiguous, no gaps, the given bytes.
  std::vector<size_t> order(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& oa = j[ts[a].name]["data_offsets"];
    const auto& ob = j[ts[b].name]["data_offsets"];
    return std::pair(oa[0].get<uint64_t>(), oa[1].get<uint64_t>()) <
           std::pair(ob[0].get<uint64_t>(), ob[1].get<uint64_t>());
  });
  uint64_t expected_begin = 0, total = 0;
  for (size_t i : order) {
    const auto& e = j[ts[i].name];
    EXPECT_EQ(e["data_offsets"][0].get<uint64_t>(), expected_begin) << ts[i].name;
    expected_begin = e["data_offsets"][1].get<uint64_t>();
    EXPECT_EQ(e["data_offsets"][1].get<uint64_t>() - e["data_offsets"][0].get<uint64_t>(),
              storage[i].size());
    total += storage[i].size();
    if (!storage[i].empty()) {
      EXPECT_EQ(std::memcmp(bytes.data() + 8 + n + e["data_offsets"][0].get<uint64_t>(),
                            storage[i].data(), storage[i].size()),
                0);
    }
  }
  EXPECT_EQ(bytes.size(), 8 + n + total);
  EXPECT_EQ(j["b.weight"]["dtype"], "F16");
  EXPECT_EQ(j["mask"]["dtype"], "BOOL");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json::array());
  // With LETHE_TEST_KEEP=DIR, a copy for manual cross-checking with the reference reader:
  //   python tools/fixtures/make_io_fixtures.py --verify DIR/lethe_written.safetensors
  lethe::testing::keep_copy(path, "lethe_written.safetensors");
}

TEST(Safetensors, WriterRejectsBadInputAndLeavesOldFileIntact) {
  const std::string dir = test::temp_dir("writer_bad");
  const std::string path = dir + "/m.safetensors";
  test::write_bytes(path, "old contents");
  float x = 1;
  expect_error(
      [&] {
        write_safetensors(path, {{"w", DType::f32, {}, &x}, {"w", DType::f32, {}, &x}});
      },
      {"m.safetensors", "'w'", "duplicate"});
  expect_error(
      [&] {
        write_safetensors(path, {{"__metadata__", DType::f32, {}, &x}});
      },
      {"m.safetensors", "reserved"});
  expect_error(
      [&] {
        write_safetensors(path, {{"neg", DType::f32, {2, -1}, &x}});
      },
      {"'neg'", "[2,-1]"});
  expect_error(
      [&] {
        write_safetensors(path, {{"null", DType::f32, {4}, nullptr}});
      },
      {"'null'", "null data"});
  expect_error(
      [&] {
        write_safetensors(path, {{"huge", DType::f32, {int64_t{1} << 40, int64_t{1} << 40}, &x}});
      },
      {"'huge'"});
  EXPECT_EQ(test::read_bytes(path), "old contents");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  expect_error([&] { write_safetensors(dir + "/no/such/dir/x.safetensors", {}); },
               {dir + "/no/such/dir/x.safetensors"});
  // A successful write replaces the old file.
  write_safetensors(path, {{"w", DType::f32, {}, &x}});
  EXPECT_EQ(SafetensorsFile::open(path).at("w").nbytes(), 4u);
}

TEST(Safetensors, EmptyFileHasNoTensors) {
  const std::string path = test::temp_dir("empty") + "/e.safetensors";
  write_safetensors(path, {});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, DtypeNames) {
  for (auto [name, dt] : std::vector<std::pair<std::string, DType>>{{"F16", DType::f16},
                                                                    {"BF16", DType::bf16},
                                                                    {"F32", DType::f32},
                                                                    {"F64", DType::f64},
                                                                    {"I64", DType::i64},
                                                                    {"I32", DType::i32},
                                                                    {"U8", DType::u8},
                                                                    {"BOOL", DType::boolean}}) {
    EXPECT_EQ(parse_safetensors_dtype(name), dt);
    EXPECT_EQ(safetensors_dtype_name(dt), name);
  }
  EXPECT_FALSE(parse_safetensors_dtype("I8").has_value());
  EXPECT_FALSE(parse_safetensors_dtype("f16").has_value());
}

}  // namespace
}  // namespace lethe::io
