# Two commands do all set-up from a fresh clone:
#   make run    create .venv, install, run the main job
#   make test   create .venv, install, run the test suite
# torch==2.13.0 is installed first through constraints.txt so pip never pulls a CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
EXTRAS := test

.PHONY: run test install clean

$(STAMP): setup.cfg pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m arrcoc.cli allocate arrcoc/assets/sample_scene.png --query "What does the blue sign say?" --budget 640 --out arrcoc_overlay.png

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
