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

// A mistake in what the user asked for, found after the command line parsed: a recipe key that
// contradicts another, a method parameter the method does not read, an output over an input.
// The CLI exits with status 2 for it (docs/cli.md), as for a malformed flag; every other Error
// (a bad file, a failed run) is status 1.
class UsageError : public Error {
 public:
  using Error::Error;
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

// LETHE_USAGE_CHECK: the same, throwing lethe::UsageError (exit status 2 in the CLI).
#define LETHE_USAGE_CHECK(cond, ...)                                              \
  do {                                                                            \
    if (!(cond)) throw ::lethe::UsageError(::lethe::detail::concat(__VA_ARGS__)); \
  } while (0)

#define LETHE_FAIL(...) throw ::lethe::Error(::lethe::detail::concat(__VA_ARGS__))

}  // namespace lethe
