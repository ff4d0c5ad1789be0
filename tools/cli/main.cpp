// `lethe`: the command-line front end, git-style subcommands (see docs/cli.md).
// Must not hold subcommand logic: it parses, dispatches, and turns errors into exit codes.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>

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

// Under mpirun the same failure usually reaches every rank (a recipe mistake, a missing file):
// it is printed once, by the first rank to claim it, as one write() so lines never interleave.
// The claim is a file named by the job and the message in the temp directory (O_EXCL).
bool first_to_report(const std::string& message) {
  const char* job = std::getenv("PMIX_NAMESPACE");
  if (!job) job = std::getenv("OMPI_MCA_ess_base_jobid");
  if (!job) return true;
  uint64_t h = 1469598103934665603ull;  // FNV-1a of job and message
  for (const std::string& part : {std::string(job), std::string("\n"), message})
    for (unsigned char c : part) h = (h ^ c) * 1099511628211ull;
  char name[96];
  std::snprintf(name, sizeof name, "lethe-error-%d-%016llx", static_cast<int>(::getuid()),
                static_cast<unsigned long long>(h));
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) return true;
  const int fd = ::open((dir / name).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return errno != EEXIST;
  ::close(fd);
  return true;
}

int fail(const std::string& message, int status) {
  std::string one_line = message;
  for (char& c : one_line)
    if (c == '\n' || c == '\r') c = ' ';
  // Under mpirun the line says which rank printed it.
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!rank) rank = std::getenv("PMI_RANK");
  if (rank && !first_to_report(one_line)) return status;
  const std::string line =
      "lethe: error: " + (rank ? std::string("rank ") + rank + ": " : std::string()) + one_line +
      "\n";
  std::cerr.flush();
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(2, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
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
    return fail(e.what(), status != 0 ? status : kRuntimeError);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lethe: unlearning for OPT and Llama-family language models (JSON Lines on stdout, messages "
      "on "
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
  } catch (const lethe::UsageError& e) {
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
