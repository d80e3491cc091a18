# Two commands for a fresh machine: `make demo` and `make test`.
# GPU users: `make demo TORCH_SPEC="torch"` (any pip requirements, space-separated) picks their CUDA
# build of torch; `TORCH_SPEC="torch==X torchvision==Y" EXTRAS=dev,vision` adds a matching torchvision and timm.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev
BIN := $(VENV)/bin
OUT ?= runs

.PHONY: demo test lint bench clean

# open_clip_torch (tests only) ships CLIP's BPE merge list for the tiny SD-format fixtures; installed
# without its dependencies, which would pull a torchvision build that does not match the CPU torch.
$(BIN)/modelmine: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(foreach r,$(TORCH_SPEC),"$(r)")
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/pip install -q --no-deps "open_clip_torch>=2.20"
	touch $@

demo: $(BIN)/modelmine
	$(BIN)/modelmine teacher --out $(OUT)/demo-teacher
	$(BIN)/modelmine cake --out $(OUT)/demo-cake --teacher $(OUT)/demo-teacher/teacher.safetensors

test: $(BIN)/modelmine
	$(BIN)/python -m pytest tests

lint: $(BIN)/modelmine
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
