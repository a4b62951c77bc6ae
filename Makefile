# secvirt.kvm developer entry points. Everything a fresh Debian 12 machine
# needs is installed by `make setup` (run as root: it installs Debian packages).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COLL := .cache/collections/ansible_collections/secvirt/kvm
# Mitogen's strategy plugins, linked from the venv (see docs/testing.md)
MITOGEN := .cache/mitogen-strategy
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export PATH := $(CURDIR)/$(BIN):$(PATH)
SCENARIOS ?= $(sort $(filter-out _harness,$(notdir $(wildcard molecule/*))))
DEB_PACKAGES := qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client \
  libvirt-dev pkg-config gcc python3-dev python3-venv git make rsync shellcheck \
  sasl2-bin libsasl2-modules
T := tests/harness/stage.sh

.PHONY: help setup venv harness-qemu image demo test lint sanity unit molecule clean reap

help:
	@echo "make demo   - boot the disposable KVM host, run playbooks/site.yml, print what is enforced"
	@echo "make test   - the whole suite: yamllint, ansible-lint, ansible-test sanity, unit, molecule"
	@echo "make setup  - install Debian packages and the pinned Python toolchain (.venv)"

setup: .cache/setup.stamp venv $(COLL) $(MITOGEN) harness-qemu

# The QEMU that runs the test VMs: on Debian 12, QEMU 10 from
# bookworm-backports unpacked into ~/.cache/secvirt-kvm/qemu (nothing is
# installed on the machine); see tests/harness/fetch-qemu.sh.
harness-qemu: .cache/setup.stamp
	@tests/harness/fetch-qemu.sh

.cache/setup.stamp: Makefile
	@mkdir -p .cache
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  [ "$$(id -u)" = 0 ] || { echo "setup: need root to install: $$missing" >&2; exit 2; }; \
	  echo "setup: apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(COLL):
	@mkdir -p $(dir $(COLL))
	@ln -sfn $(CURDIR) $(COLL)

$(MITOGEN): $(VENV)/.stamp
	@ln -sfn "$$($(BIN)/python -c 'import ansible_mitogen, os; print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy"))')" $(MITOGEN)

image: setup
	@$(T) image $(BIN)/python tests/harness/vm.py image

demo: setup
	@tests/harness/demo.sh

test: setup
	@tests/harness/run-suite.sh $(SCENARIOS)

lint: setup
	@$(T) yamllint $(BIN)/yamllint -s .
	@$(T) ansible-lint $(BIN)/ansible-lint

sanity: setup
	@$(T) sanity tests/harness/sanity.sh

unit: setup
	@$(T) unit $(BIN)/pytest -q tests/unit

molecule: setup
	@for s in $(SCENARIOS); do $(T) "molecule:$$s" $(BIN)/molecule test -s $$s || exit 1; done

reap:
	@$(PYTHON) tests/harness/vm.py reap >/dev/null

clean: reap
	rm -rf .cache/collections tests/output *.tar.gz
