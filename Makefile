# dendriteseg: two commands do everything on a fresh machine.
#   make demo   set up .venv and run the main job on built-in defaults
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO_DIR ?= demo_out
# A CPU build of torch lies on this machine's disk; pin it so pip never pulls a CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,synth,dask,morphology,napari]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/dendriteseg demo $(DEMO_DIR)

# The napari tests draw in a real viewer: they need a display, which xvfb-run gives (Debian: xvfb).
# Tests run on one worker per core, at most 4 (pytest-xdist; each worker takes its share of the threads).
PYTEST ?= $(PY) -m pytest -n auto --maxprocesses 4
test: install
	@if command -v xvfb-run >/dev/null 2>&1; then \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PYTEST); \
	else \
		echo "xvfb-run not found: the napari tests are skipped (apt-get install xvfb to run them)"; \
		$(PYTEST) -m "not napari"; \
	fi

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/lazy_read_memory.py
	$(PY) benchmarks/metrics_speed.py
	$(PY) benchmarks/synth_cost.py
	$(PY) benchmarks/synth_difficulty.py --steps 600
	$(PY) benchmarks/train_throughput.py --precisions fp32
	$(PY) benchmarks/tile_depth.py
	$(PY) benchmarks/inference.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
