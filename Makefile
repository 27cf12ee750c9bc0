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
	$(BIN)/pip install -q -e '.[torch,eval,dev,prune]'
	touch $@

install: $(BIN)/edgepose

demo: install
	$(BIN)/edgepose demo --out out

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out build *.egg-info
