# The front door. `make demo` and `make test` each install missing Debian packages, configure and
# build; then run the demo or every test. Compiles go through ccache (docs/build.md). Build trees:
# build/ (Release, CUDA when nvcc is found), build-asan/ (ASan + UBSan, CPU only) and build-emu/
# (Release, the CUDA backend on the CUDA emulator of kernels/cuda/emu, its kernels and the
# emulator under ASan + UBSan: every CUDA test runs there, no GPU needed).
BUILD      ?= build
ASAN_BUILD ?= build-asan
EMU_BUILD  ?= build-emu
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= safetensors opt_config json tokenizer_json vocab_merges tokenizer_encode sentencepiece dataset recipe checkpoint_state
CMAKE_ARGS ?=

.PHONY: all deps configure configure-asan configure-emu check-deps build asan emu emu-all demo test test-fast test-emu bench fuzz format clean

all: build

deps:
	@bash tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) > $(BUILD).configure.log 2>&1 \
	  || (cat $(BUILD).configure.log; exit 1)

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

configure-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLETHE_SANITIZE=ON \
	  -DLETHE_CUDA=OFF -DLETHE_BENCH=OFF $(CMAKE_ARGS) > $(ASAN_BUILD).configure.log 2>&1 \
	  || (cat $(ASAN_BUILD).configure.log; exit 1)

# The emulated CUDA tree: the .cu files compiled as C++ and run by kernels/cuda/emu. Everything
# outside kernels/ compiles exactly as in $(BUILD), so ccache shares those objects.
configure-emu: deps
	@cmake -S . -B $(EMU_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DLETHE_CUDA=EMU \
	  -DLETHE_SANITIZE_CUDA=ON -DLETHE_BENCH=OFF $(CMAKE_ARGS) > $(EMU_BUILD).configure.log 2>&1 \
	  || (cat $(EMU_BUILD).configure.log; exit 1)

# The guard against a missing install step: every file CMake found under /usr must come from a
# package that tools/install-deps.sh installs (or its dependencies). Runs before anything builds.
check-deps: configure configure-asan configure-emu
	@bash tools/install-deps.sh --check $(BUILD) $(ASAN_BUILD) $(EMU_BUILD)

asan: configure-asan
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# `lethe` whose --device cuda runs on the CUDA emulator: $(EMU_BUILD)/tools/lethe (docs/cuda.md).
emu: configure-emu
	@cmake --build $(EMU_BUILD) -j $(JOBS) --target lethe
	@echo "the CUDA emulator's lethe: $(EMU_BUILD)/tools/lethe (try --device cuda)"

emu-all: configure-emu
	@cmake --build $(EMU_BUILD) -j $(JOBS)

demo: configure
	@cmake --build $(BUILD) -j $(JOBS) --target lethe
	@$(BUILD)/tools/lethe demo

# Every test: the dependency guard, the Release tree (unit, golden, CLI, the installed-package
# example), the sanitizer tree, then every CUDA test on the emulator (label cuda; nothing may skip).
# The nvcc tree's own CUDA tests need a GPU: tools/gpu_check.sh runs them where one is lent.
test: check-deps
	@$(MAKE) --no-print-directory build asan emu-all
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE cuda
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE no_sanitizer
	@$(MAKE) --no-print-directory test-emu

# The CUDA tests on the emulator. Leak checking is off there: OpenMPI's allocations under mpirun
# would read as leaks (the CPU sanitizer tree checks leaks).
test-emu: emu-all
	@cd $(EMU_BUILD) && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j $(JOBS) -L cuda \
	  --no-tests=error

test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE cuda

bench: build
	@$(BUILD)/tools/lethe bench ops

# libFuzzer on every parser (clang, ASan + UBSan): each target runs FUZZ_SECONDS (default 60; the
# hardening issue asked for 600) from the committed corpus plus what earlier runs found
# ($(FUZZ_BUILD)/corpus/<t>). A crash is written to $(FUZZ_BUILD)/crashes/<t>/: copy it to
# tests/fuzz/crashes/<t>/ with the fix, and `make test` replays it from then on.
fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DLETHE_FUZZ=ON -DLETHE_CUDA=OFF -DLETHE_MPI=OFF -DLETHE_BENCH=OFF -DLETHE_CCACHE=ON > $(FUZZ_BUILD).configure.log 2>&1 \
	  || (cat $(FUZZ_BUILD).configure.log; exit 1)
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 \
	    -max_len=1048576 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2> $(FUZZ_BUILD)/fuzz_$$t.log \
	    || { tail -40 $(FUZZ_BUILD)/fuzz_$$t.log; exit 1; }; \
	  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(FUZZ_BUILD)/fuzz_$$t.log | tr '\n' ' '; echo; \
	done

format:
	@find engine kernels models trainers eval tools tests examples -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \
	  | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(EMU_BUILD) $(BUILD).configure.log \
	  $(ASAN_BUILD).configure.log $(FUZZ_BUILD).configure.log $(EMU_BUILD).configure.log
