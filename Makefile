# Set-up and the two entry points of the README. Everything installs into .venv from the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint clean browser

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

REPO ?= model_repository

run: $(STAMP)  ## the main job: serve rewards from $(REPO), building the default repository first if it is empty
	$(BIN)/rewarddance bootstrap --repo $(REPO) --if-missing
	$(BIN)/rewarddance serve --repo $(REPO)

demo: $(STAMP)  ## the offline shapes-world demo: dataset -> encoder -> component scorers, scored against gold
	$(BIN)/rewarddance demo --out runs/demo

# The A/B page's test drives Debian's Chromium through its chromedriver: installed here when missing (root, or sudo).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

test: $(STAMP) browser  ## the whole test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
