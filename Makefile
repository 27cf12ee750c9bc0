# edgepose: `make demo` (main job on the built-in default models) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of PyTorch; any other spec may pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# Index pip takes PyTorch from. Empty (default): pip's configured index, whose torch wheel is the
# CPU one here. Where the default wheel is the CUDA one (e.g. PyPI on Linux x86_64):
#   make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
TORCH_PIP_ARGS  := $(if $(strip $(TORCH_INDEX_URL)),--index-url $(strip $(TORCH_INDEX_URL)))

.PHONY: install demo test clean trt-api-snapshots test-real-trt-api

$(BIN)/edgepose: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) $(TORCH)
	$(BIN)/pip install -q -e '.[torch,eval,dev,prune]'
	touch $@

install: $(BIN)/edgepose

demo: install
	$(BIN)/edgepose demo --out out

# Triton Inference Server for `edgepose serve` and its tests (CPU: python backend only):
# tritonclient (extra 'triton'); the tritonserver 2.51 binary inside nvidia-pytriton, files only
# (--no-deps: its numpy<2 pin must not touch .venv); the models' own numpy<2 Python, made by
# `edgepose serve --setup` (idempotent: a stamp in that env records what it installed).
EDGEPOSE_CACHE ?= $(HOME)/.cache/edgepose
TRITON_DIR     := $(EDGEPOSE_CACHE)/triton
PYTRITON       ?= nvidia-pytriton==0.7.0

.PHONY: triton

$(VENV)/.triton-client: $(BIN)/edgepose
	$(BIN)/pip install -q -e '.[triton]'
	touch $@

$(TRITON_DIR)/server/.installed:
	rm -rf $(TRITON_DIR)/server
	$(BIN)/pip install -q --no-deps --target $(TRITON_DIR)/server $(PYTRITON)
	touch $@

triton: $(VENV)/.triton-client $(TRITON_DIR)/server/.installed
	EDGEPOSE_CACHE=$(EDGEPOSE_CACHE) $(BIN)/edgepose serve --setup

test: install triton
	EDGEPOSE_CACHE=$(EDGEPOSE_CACHE) $(BIN)/python -m pytest -q

# Developer targets (need network, binutils, gcc): regenerate tests/data/trt_api from the real
# binding wheels, and run the TensorRT tests with the real 10.3 / 11.4 bindings importable
# (stub libraries, no GPU). See docs/tensorrt.md.
TRT_API_TESTS := tests/backends/test_trt_api_contract.py tests/backends/test_trt_build_logic.py tests/backends/test_trt_runner.py tests/backends/test_trt_imports.py \
                 tests/backends/test_runners.py tests/test_lazy_imports.py tests/gpu
trt-api-snapshots: install
	for v in 10.3.0 10.16.0.72 11.4.0.106; do $(BIN)/python tools/trt_api_snapshot.py tensorrt $$v || exit 1; done
	for r in cuda-python==12.2.1 cuda-python==12.6.2.post1 cuda-bindings==12.9.0 cuda-bindings==13.0.0; do \
		$(BIN)/python tools/trt_api_snapshot.py cuda $$r || exit 1; done

test-real-trt-api: install
	for v in 10.3.0 11.4.0.106; do d=$$(mktemp -d) && \
		$(BIN)/python tools/trt_api_snapshot.py env $$v --dir $$d > $$d/env.sh && \
		( . $$d/env.sh && $(BIN)/python -m pytest -q $(TRT_API_TESTS) ) || exit 1; done

clean:
	rm -rf $(VENV) out build *.egg-info
