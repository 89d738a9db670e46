# Two commands on a fresh machine: `make demo` and `make test`. Both create and reuse .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -rs --durations=25 tests  # the slowest tests, so a CI log shows where the time goes

test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -m "not slow" tests

demo: $(STAMP)
	$(VENV)/bin/deepspeed --num_gpus 2 train.py --deepspeed_config ds_configs/zero2.json --set parallel.ep_size=2

clean:
	rm -rf $(VENV) runs .cache
