// `lethe`: the command-line front end, git-style subcommands (see docs/cli.md).
// Must not hold subcommand logic: it parses, dispatches, and turns errors into exit codes.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "engine/dist/communicator.h"
#include "engine/error.h"
#include "tools/cli/commands.h"

#ifndef LETHE_VERSION
#define LETHE_VERSION "unknown"
#endif

namespace {

// Exit statuses: 0 success, 1 a runtime error (bad file, bad model, ...), 2 a usage error.
constexpr int kRuntimeError = 1;
constexpr int kUsageError = 2;

int fail(const std::string& message, int status) {
  std::string one_line = message;
  for (char& c : one_line)
    if (c == '\n' || c == '\r') c = ' ';
  // Under mpirun every rank's message says which rank it is.
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!rank) rank = std::getenv("PMI_RANK");
  std::cerr << "lethe: error: " << (rank ? std::string("rank ") + rank + ": " : std::string())
            << one_line << std::endl;
  return status;
}

// Under mpirun a rank that fails stops every rank (MPI_Abort) instead of leaving them waiting in
// a collective; a run that succeeds finalises MPI.
int finish(int status) {
  if (!lethe::dist::launched_by_mpi()) return status;
  try {
    if (status != 0) lethe::dist::world().abort(status);
    lethe::dist::finalize();
  } catch (const std::exception& e) {
    std::cerr << "lethe: error: " << e.what() << std::endl;
    return status != 0 ? status : kRuntimeError;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lethe: unlearning for OPT language models (JSON Lines on stdout, messages on "
      "stderr)",
      "lethe"};
  app.set_version_flag("--version", std::string("lethe ") + LETHE_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  lethe::cli::add_demo_command(app);
  lethe::cli::add_bench_command(app);
  lethe::cli::add_tokenize_command(app);
  lethe::cli::add_inspect_command(app);
  lethe::cli::add_score_command(app);
  lethe::cli::add_generate_command(app);
  lethe::cli::add_unlearn_command(app);
  lethe::cli::add_finetune_command(app);
  lethe::cli::add_eval_command(app);
  lethe::cli::add_merge_command(app);

  // CLI11 would call an unknown command an "unexpected argument" (and an unknown option a
  // missing subcommand); name them as git does.
  if (argc > 1 && argv[1][0] == '-') {
    std::string first = argv[1];
    if (first != "-h" && first != "--help" && first != "--version")
      return fail("unknown option '" + first + "' (see 'lethe --help')", kUsageError);
  } else if (argc > 1) {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      known = known || sub->check_name(argv[1]);
    if (!known)
      return fail(std::string("unknown command '") + argv[1] + "' (see 'lethe --help')",
                  kUsageError);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return finish(app.exit(e));  // --help, --version
    return finish(fail(e.what(), kUsageError));
  } catch (const lethe::Error& e) {
    return finish(fail(e.what(), kRuntimeError));
  } catch (const std::bad_alloc&) {
    return finish(fail("out of memory", kRuntimeError));
  } catch (const std::exception& e) {
    return finish(fail(std::string("internal error: ") + e.what(), kRuntimeError));
  }
  return finish(0);
}
