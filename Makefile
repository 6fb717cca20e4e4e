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
# What the tests use beyond the package: tritonclient and lmms-eval (in .venv; lmms-eval 0.7 needs
# filelock<4, its `lmms` extra says so), a tritonserver side environment
# under /tmp (nvidia-pytriton pins numpy<2, so it never goes into .venv) and Debian's Chromium for the
# demo's browser test. Each step is best effort: where it cannot install, its tests skip and say why.
TEST_EXTRAS := $(VENV)/.test-extras

.PHONY: run test install clean

$(STAMP): setup.cfg pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

$(TEST_EXTRAS): $(STAMP)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt "tritonclient[http,grpc]>=2.40" >/dev/null 2>&1 \
	  || echo "make: tritonclient could not be installed; the tritonserver tests will skip"
	$(PIP) install -q --disable-pip-version-check -c constraints.txt "onnx>=1.16" "onnxscript>=0.2" "onnxruntime>=1.18" >/dev/null 2>&1 \
	  || echo "make: onnx / onnxruntime could not be installed; the ONNX export test will skip"
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[lmms]" >/dev/null 2>&1 \
	  || echo "make: lmms-eval could not be installed; the lmms-eval plugin test will skip"
	$(PY) -m arrcoc.serving.server install >/dev/null 2>&1 \
	  || echo "make: the tritonserver side environment could not be installed; the tritonserver tests will skip"
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	    || echo "make: chromium could not be installed; the browser test will skip"; \
	  else echo "make: chromium + chromium-driver not installed (needs root and apt); the browser test will skip"; fi; \
	fi
	touch $(TEST_EXTRAS)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m arrcoc.cli allocate arrcoc/assets/sample_scene.png --query "What does the blue sign say?" --budget 640 --out arrcoc_overlay.png

test: $(STAMP) $(TEST_EXTRAS)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
