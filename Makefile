# Two commands for a fresh machine: `make demo` and `make test`.
# GPU users: `make demo TORCH_SPEC="torch"` (or any pip requirement) picks their CUDA build of torch.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
OUT ?= runs

.PHONY: demo test lint bench clean

$(BIN)/modelmine: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# test-only: CLIP's BPE merge list for the tiny SD-format fixtures; no deps (they would pull torchvision)
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
