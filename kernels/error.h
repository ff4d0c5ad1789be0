// lethe::Error — the one exception type for every failure a user can cause (lowest layer, so
// kernels can throw it too).
// Messages name what is wrong and where (file, tensor, op, shape, flag); never assert() on user
// input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lethe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// LETHE_CHECK(cond, "op matmul: ", a, " vs ", b) throws lethe::Error with the joined message.
#define LETHE_CHECK(cond, ...)                                               \
  do {                                                                       \
    if (!(cond)) throw ::lethe::Error(::lethe::detail::concat(__VA_ARGS__)); \
  } while (0)

#define LETHE_FAIL(...) throw ::lethe::Error(::lethe::detail::concat(__VA_ARGS__))

}  // namespace lethe
