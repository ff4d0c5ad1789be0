// Paths the tests need at run time. They are compiled into one small generated file per build tree
// (tests/CMakeLists.txt), not into every test source, so that ccache can reuse the objects of a
// clone in another folder (docs/build.md).
#pragma once

#include <string>

namespace lethe::testing {

// The repository root (fixtures live under tests/<folder>/fixtures/).
const std::string& source_dir();

}  // namespace lethe::testing
