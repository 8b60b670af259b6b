# slipway: the two set-up commands are `make demo` and `make test`; both install what
# they need first (scripts/install-deps), then build with CMake.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
PYTHON := /usr/bin/python3
WERROR := $(if $(CI),ON,OFF)

.PHONY: all deps build build-asan test test-unit test-integration test-asan test-long demo bench bench-train bench-infer bench-serve fuzz clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSW_WERROR=$(WERROR) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSW_SANITIZE=address,undefined -DSW_WERROR=$(WERROR) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# Unit tests (ctest), integration tests (pytest), unit tests again under ASan+UBSan;
# the last line sums them up.
test: build build-asan
	@scripts/run-tests $(BUILD) $(ASAN_BUILD)

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-integration: build
	@SLIPWAY_BIN=$(CURDIR)/$(BUILD)/slipway $(PYTHON) -m pytest tests/integration -q

test-asan: build-asan
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS)

# Long-running checks and full-size benchmarks (not part of `make test`).
test-long: build
	@SLIPWAY_BIN=$(CURDIR)/$(BUILD)/slipway $(PYTHON) -m pytest tests/long -q -s

# Benchmarks (figures, never pass/fail; docs/BENCHMARKS.md): the data pipeline, then
# training against PyTorch, inference against ONNX Runtime, serving against nginx.
bench: build
	@bench/prep_read.sh $(BUILD)
	@bench/train_vs_torch.sh $(BUILD)
	@bench/infer_vs_ort.sh $(BUILD)
	@bench/serve_vs_nginx.sh $(BUILD)

bench-train: build
	@bench/train_vs_torch.sh $(BUILD)

bench-infer: build
	@bench/infer_vs_ort.sh $(BUILD)

# The model server against nginx (wrk; installs nginx and wrk with apt when missing).
bench-serve: build
	@bench/serve_vs_nginx.sh $(BUILD)

# libFuzzer builds of every fuzz target (clang); run one with e.g.
#   build-fuzz/tests/fuzz_csv -max_total_time=60 tests/fuzz/corpus/csv
fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DSW_FUZZ=ON -DSW_CUDA=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS)

# The whole flow on Fashion-MNIST (scripts/demo, docs/PIPELINE.md); DEMO_QUICK=1 is the
# reduced run of the test suite; SLIPWAY=PATH uses that binary and skips the build.
demo: $(if $(SLIPWAY),,build)
	@DEMO_QUICK=$(DEMO_QUICK) DEMO_KEEP=$(DEMO_KEEP) DEMO_DIR=$(DEMO_DIR) SLIPWAY=$(SLIPWAY) scripts/demo $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz demo
