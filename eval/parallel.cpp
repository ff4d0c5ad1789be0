// Blocks and gathers of per-item evaluation results over dist::world() (byte all-gather).
#include "eval/parallel.h"

#include <cstring>
#include <string>

#include "engine/dist/communicator.h"
#include "engine/error.h"

namespace lethe::eval {

namespace {

// Length-prefixed little blobs: u64 item count, then per item the fields in order.
class Writer {
 public:
  template <typename T>
  void vec(const std::vector<T>& v) {
    u64(v.size());
    const size_t n = v.size() * sizeof(T);
    const size_t at = out.size();
    out.resize(at + n);
    if (n) std::memcpy(out.data() + at, v.data(), n);
  }
  void u64(uint64_t x) { out.append(reinterpret_cast<const char*>(&x), sizeof x); }
  std::string out;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  uint64_t u64() {
    uint64_t x = 0;
    take(&x, sizeof x);
    return x;
  }
  template <typename T>
  std::vector<T> vec() {
    std::vector<T> v(static_cast<size_t>(u64()));
    take(v.data(), v.size() * sizeof(T));
    return v;
  }

 private:
  void take(void* dst, size_t n) {
    LETHE_CHECK(pos_ + n <= s_.size(), "evaluation gather: truncated data from a rank");
    if (n) std::memcpy(dst, s_.data() + pos_, n);
    pos_ += n;
  }
  const std::string& s_;
  size_t pos_ = 0;
};

template <typename T, typename Put, typename Get>
std::vector<T> gather(const std::vector<T>& mine, Put put, Get get) {
  dist::Communicator& w = dist::world();
  if (w.size() == 1) return mine;
  Writer wr;
  wr.u64(mine.size());
  for (const T& x : mine) put(wr, x);
  std::vector<T> all;
  for (const std::string& blob : w.all_gather_bytes(wr.out)) {
    Reader rd(blob);
    const uint64_t n = rd.u64();
    for (uint64_t i = 0; i < n; ++i) all.push_back(get(rd));
  }
  return all;
}

}  // namespace

Block my_block(size_t n) {
  dist::Communicator& w = dist::world();
  const size_t r = static_cast<size_t>(w.rank()), k = static_cast<size_t>(w.size());
  return {n * r / k, n * (r + 1) / k};
}

std::vector<double> gather_items(const std::vector<double>& mine) {
  return gather(
      mine, [](Writer& w, double x) { w.vec(std::vector<double>{x}); },
      [](Reader& r) { return r.vec<double>().at(0); });
}

std::vector<std::vector<double>> gather_items(const std::vector<std::vector<double>>& mine) {
  return gather(
      mine, [](Writer& w, const std::vector<double>& x) { w.vec(x); },
      [](Reader& r) { return r.vec<double>(); });
}

std::vector<std::vector<int64_t>> gather_items(const std::vector<std::vector<int64_t>>& mine) {
  return gather(
      mine, [](Writer& w, const std::vector<int64_t>& x) { w.vec(x); },
      [](Reader& r) { return r.vec<int64_t>(); });
}

std::vector<TokenStats> gather_items(const std::vector<TokenStats>& mine) {
  return gather(
      mine,
      [](Writer& w, const TokenStats& s) {
        w.vec(s.tokens);
        w.vec(s.logprob);
        w.vec(s.match);
        w.vec(s.mu);
        w.vec(s.var);
      },
      [](Reader& r) {
        TokenStats s;
        s.tokens = r.vec<int64_t>();
        s.logprob = r.vec<double>();
        s.match = r.vec<uint8_t>();
        s.mu = r.vec<double>();
        s.var = r.vec<double>();
        return s;
      });
}

}  // namespace lethe::eval
