# edgepose: `make demo` (main job on the built-in default models) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of PyTorch; any other spec may pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install demo test clean

$(BIN)/edgepose: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[torch,eval,dev]'
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

clean:
	rm -rf $(VENV) out build *.egg-info
