# pic.connectivity developer entry points.
#
#   make demo   set up everything, start the lab, converge it with playbooks/site.yml, report
#   make test   deps, units, sanity, lint, labtests, molecule (stops at the first failure)
#
# Every target works on a fresh clone on Debian 12 as root: `deps` installs the
# Debian packages that are missing (one apt-get update), creates .venv from
# Debian's /usr/bin/python3 and installs requirements-dev.txt into it, then
# builds the collection and installs it into .collections/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:
.DELETE_ON_ERROR:

REPO := $(CURDIR)
VENV := $(REPO)/.venv
# Debian's interpreter: python3-venv comes from apt (see APT_PACKAGES).
VENV_PYTHON ?= /usr/bin/python3
VENV_STAMP := $(VENV)/.pic-deps-stamp
PY := $(VENV)/bin/python
COLLECTIONS_DIR := $(REPO)/.collections
BUILD_DIR := $(REPO)/build
DIST_DIR := $(BUILD_DIR)/dist
SANITY_ROOT := $(BUILD_DIR)/ansible_collections/pic/connectivity
SANITY_PYTHON ?= 3.11
LAB_INVENTORY := lab/inventory/hosts.yml

# Cell-side and lab packages (Debian 12).  python3-apt is for ansible.builtin.apt
# (the role's package task), which would otherwise try to install it itself.
# chromium (headless) opens the health report's HTML in tests/lab/test_health_report.py.
# iperf3 measures forwarding through a cell (bench/forwarding.py).
APT_PACKAGES := wireguard-tools wireguard-go nftables iproute2 python3-pyroute2 \
	python3-netaddr python3-nftables curl iputils-ping socat supervisor procps \
	python3-venv python3-apt tor \
	sshuttle openssh-client openssh-server redsocks microsocks tinyproxy \
	openvpn openssl iptables chromium iperf3

# Every target uses the venv's tools and the collection installed from this tree.
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_DIR)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help deps apt venv collection units sanity lint labtests molecule test demo \
	lab-up lab-down bench clean distclean

help:
	@echo "make demo       set up, start the lab, run playbooks/site.yml on it, print the report"
	@echo "make test       deps + units + sanity + lint + labtests + molecule (first failure stops)"
	@echo "make deps       Debian packages, .venv (requirements-dev.txt), build + install the collection"
	@echo "make units      pytest tests/unit"
	@echo "make sanity     ansible-test sanity (python $(SANITY_PYTHON)) on a copy in build/ansible_collections/"
	@echo "make lint       ansible-lint (production profile) + antsibull-changelog lint"
	@echo "make labtests   pytest tests/lab (root: network namespaces)"
	@echo "make molecule   molecule test --all: the scenarios of extensions/molecule on their own lab"
	@echo "make lab-up / lab-down / bench / clean / distclean"

# ---------------------------------------------------------------- set-up

deps: apt venv collection

apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -qx 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "==> apt: all Debian packages present"; exit 0; fi; \
	echo "==> apt: missing:$$missing"; \
	sudo=""; if [ "$$(id -u)" != 0 ]; then sudo="sudo"; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$sudo apt-get update; \
	$$sudo apt-get install -y --no-install-recommends $(APT_PACKAGES)

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements-dev.txt | apt
	@start=$$(date +%s); \
	if [ ! -x "$(PY)" ]; then echo "==> creating $(VENV) from $(VENV_PYTHON)"; "$(VENV_PYTHON)" -m venv "$(VENV)"; fi; \
	echo "==> pip install -r requirements-dev.txt"; \
	"$(PY)" -m pip install -q -r requirements-dev.txt; \
	touch "$@"; \
	echo "==> venv ready in $$(( $$(date +%s) - start ))s"

# Always rebuilt (about 2 s) so that .collections/ never lags behind the tree.
collection: venv
	@rm -f "$(DIST_DIR)"/pic-connectivity-*.tar.gz
	ansible-galaxy collection build --force --output-path "$(DIST_DIR)" .
	ansible-galaxy collection install --offline --force -p "$(COLLECTIONS_DIR)" "$(DIST_DIR)"/pic-connectivity-*.tar.gz

# ---------------------------------------------------------------- tests

units: deps
	pytest tests/unit

# ansible-test needs the collection at .../ansible_collections/pic/connectivity,
# so `sanity` copies the content there and runs it with the venv as controller
# (no docker):
# * the copy holds what the built collection ships: the tracked and
#   untracked-but-not-ignored files, less galaxy.yml's build_ignore (the lab,
#   its tests, bench/, CI and build tooling are not collection content);
# * the copy gets its own (empty) git repository: ansible-test lists content
#   with git and would otherwise find this repository, where build/ is ignored;
# * ansible-test's per-test virtualenvs (~/.ansible/test/venv) are
#   bootstrapped by a get-pip script that ansible-test downloads from
#   ci-files.testing.ansible.com, which is not reachable here: we put our own
#   in its cache, which installs the pinned pip from PyPI with the venv's pip
#   (`pip --python`).  A genuine cached get-pip script is left alone.
define SANITY_FILTER
import fnmatch, sys, yaml
patterns = yaml.safe_load(open("galaxy.yml")).get("build_ignore") or []
def shipped(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return not any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns)
files = [f for f in sys.stdin.read().split("\0") if f]
sys.stdout.write("".join(f + "\0" for f in files if f == "galaxy.yml" or shipped(f)))
endef
export SANITY_FILTER

define GET_PIP_BOOTSTRAP
# pic.connectivity offline pip bootstrap for ansible-test (written by make sanity)
import subprocess
import sys

ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call(["$(PY)", "-m", "pip", "--python", sys.executable, "install", *ARGS]))
endef
export GET_PIP_BOOTSTRAP

sanity: deps
	@start=$$(date +%s); \
	rm -rf "$(BUILD_DIR)/ansible_collections"; \
	mkdir -p "$(SANITY_ROOT)"; \
	git ls-files -z --cached --others --exclude-standard \
	  | while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done \
	  | "$(PY)" -c "$$SANITY_FILTER" \
	  | tar --null -T - -cf - | tar -xf - -C "$(SANITY_ROOT)"; \
	pipver=$$("$(PY)" -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(types.SimpleNamespace(version="$(SANITY_PYTHON)"))["pip"])'); \
	getpip="$$("$(PY)" -c 'import os; print(os.path.expanduser("~/.ansible/test/cache"))')/get_pip_$${pipver//./_}.py"; \
	mkdir -p "$$(dirname "$$getpip")"; \
	if [ ! -e "$$getpip" ] || grep -q 'pic.connectivity offline pip bootstrap' "$$getpip"; then \
	  printf '%s\n' "$$GET_PIP_BOOTSTRAP" > "$$getpip"; \
	fi; \
	cd "$(SANITY_ROOT)"; \
	git init -q .; \
	echo "==> ansible-test sanity --python $(SANITY_PYTHON) in $(SANITY_ROOT)"; \
	rc=0; ansible-test sanity --color no --python $(SANITY_PYTHON) $(SANITY_ARGS) || rc=$$?; \
	echo "==> sanity took $$(( $$(date +%s) - start ))s (rc=$$rc)"; \
	exit $$rc

lint: deps
	ansible-lint
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

labtests: deps
	@if [ "$$(id -u)" != 0 ]; then echo "labtests need root (network namespaces)" >&2; exit 1; fi
	pytest tests/lab

# The scenarios in extensions/molecule (molecule finds them from the collection
# root, where galaxy.yml is): each one starts its own lab (create: `piclab
# down`, `up --cells N`) and removes it (destroy), so it runs after labtests,
# whose lab is gone by then.  They test the collection installed in .collections/.
molecule: deps
	@if [ "$$(id -u)" != 0 ]; then echo "molecule needs root (network namespaces)" >&2; exit 1; fi
	@start=$$(date +%s); \
	rc=0; molecule test --all || rc=$$?; \
	echo "==> molecule took $$(( $$(date +%s) - start ))s (rc=$$rc)"; \
	exit $$rc

test: deps units sanity lint labtests molecule

# ---------------------------------------------------------------- lab

lab-up: deps
	python3 lab/piclab up

lab-down:
	@if [ -x "$(PY)" ]; then py="$(PY)"; else py=python3; fi; \
	"$$py" lab/piclab down

# The demo starts from a new lab: `piclab up` checks that every peer
# reaches the internet through its cell's WAN, which a converged lab no
# longer does by design.  PICLAB_TOR=1 starts the lab's private Tor network
# with it (cell2's Tor peer); `tor.py wait` waits for its first consensus.
# The report exits 1 unless every peer left where its exit type says.
demo: deps
	python3 lab/piclab down
	PICLAB_TOR=1 python3 lab/piclab up --cells 2
	python3 lab/servers/tor.py wait
	ansible-playbook -i lab/demo/hosts.yml playbooks/site.yml
	python3 lab/demo_report.py

bench: deps
	python3 bench/run.py

# ---------------------------------------------------------------- cleaning

clean:
	rm -rf "$(BUILD_DIR)" "$(COLLECTIONS_DIR)" tests/output .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f pic-connectivity-*.tar.gz

distclean: clean
	rm -rf "$(VENV)"
