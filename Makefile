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

.PHONY: install demo test clean

$(BIN)/edgepose: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) $(TORCH)
	$(BIN)/pip install -q -e '.[torch,eval,dev]'
	touch $@

install: $(BIN)/edgepose

demo: install
	$(BIN)/edgepose demo --out out

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out build *.egg-info
