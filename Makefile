# The two commands of the README: `make demo` (main job on the built-in scene) and `make test`.
# Both set up the project venv first (idempotent; see scripts/setup_env.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
export GLOG_minloglevel ?= 2

.PHONY: setup demo lint test test-all bench clean
setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m scenesqueezer_ros.cli demo --workdir outputs/demo

# seconds: ruff, then mypy (from its cache after the first run)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -m "not slow" -q -p no:cacheprovider test

test-all: lint
	$(PY) -m pytest -q -p no:cacheprovider test

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf outputs build install log
