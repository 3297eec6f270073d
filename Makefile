# gomlx: make setup | build | demo | test | bench | install
.PHONY: all setup build build-asan demo test test-c test-asan test-py test-go bench fuzz install clean fixtures

JOBS ?= 2
PY := .venv/bin/python
BUILD := build
BUILD_ASAN := build-asan
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= What is the capital of France? Answer in one sentence.

all: build

setup:
	@scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DGOMLX_PYTHON=$(CURDIR)/$(PY) >/dev/null

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGOMLX_SANITIZE=ON -DGOMLX_PYTHON=$(CURDIR)/$(PY) >/dev/null

build-asan: setup $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN) -j $(JOBS)

# The main job: a real chat answer from the default model.
demo: build
	$(BUILD)/gomlx run --max-tokens 64 --temp 0 $(MODEL) "$(PROMPT)"

test-c: build
	cd $(BUILD) && ctest --output-on-failure

# Our C code under AddressSanitizer/UBSan (libmlx itself is not instrumented).
test-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

test-py: build
	GOMLX_BIN=$(CURDIR)/$(BUILD)/gomlx $(PY) -m pytest -q tests/py

test-go: build
	go vet ./...
	go test ./...
	go test -race ./...

test: test-c test-py test-go test-asan

# gomlx and mlx-lm side by side on the same files (docs/PERFORMANCE.md).
bench: build
	@$(PY) -c "import mlx_lm" 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check -r requirements/bench.txt
	$(PY) tools/bench.py --gomlx $(BUILD)/gomlx $(BENCH_ARGS)

# Mutated model files, configs and tokenizers through the ASan/UBSan build
# (minutes, random: not part of test; tools/fuzz_inputs.py).
fuzz: build-asan
	$(PY) tools/fuzz_inputs.py --binary $(BUILD_ASAN)/gomlx $(FUZZ_ARGS)

install: build
	cmake --install $(BUILD)

fixtures:
	tools/make_fixtures.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
