# Switchboard: the front door. `make run` and `make test` set everything up on a fresh Debian 12.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
CONFIG     ?= etc/switchboard.json
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps build run test test-asan fuzz bench bench-quick clean

all: build

deps:
	@tools/deps.sh

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/$(if $(CMAKE_GEN),build.ninja,Makefile)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/app/switchboard run -c $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B $(BUILD_ASAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DSB_SANITIZE=ON
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_FUZZ=ON -DSB_BENCH=OFF
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_parser fuzz_framing
	test/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# Side by side with Kamailio under the same SIPp load (docs/performance.md). Installs
# Kamailio when missing (benchmark only, not part of deps). Full: < 30 min; quick: < 5 min.
bench: deps
	bench/bench.sh full

bench-quick: deps
	bench/bench.sh quick

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
