# imagebind_ros: `make demo` and `make test` are the quick start (README).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: setup test demo demo-model bench clean help

help:
	@echo "make setup       create $(VENV): pinned deps, ROS 2 wheels, our messages (idempotent)"
	@echo "make demo        run the node graph on simulated sensors with the demo model"
	@echo "make test        run the test suite"
	@echo "make demo-model  retrain checkpoints/demo/demo.pt on the synthetic world (CPU, minutes)"

setup:
	@PYTHON=$(PYTHON) VENV=$(abspath $(VENV)) bash scripts/setup.sh

test: setup
	IMAGEBIND_ROS_REQUIRE_ROS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/imagebind-ros run --params config/fusion.yaml --params config/demo.yaml --duration 20 --table --executor events

demo-model: setup
	$(PY) training/make_demo_model.py --out checkpoints/demo

clean:
	rm -rf build install log .pytest_cache
