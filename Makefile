# IronTrack — the two commands a fresh Debian 12 machine (as root) needs:
#   make up     a throwaway Debian 12 systemd host on this machine, fully provisioned, smoke-tested
#   make test   every test: lint, service tests, role tests, the full Molecule sequence
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export IRONTRACK_SECRETS_DIR ?= $(CURDIR)/.secrets/local
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export IRONTRACK_INSTANCE ?= irontrack-local
export IRONTRACK_HTTPS_PORT ?= 8443
# Where the local host's PostgreSQL 18 / PgBouncer come from (scripts/pg-packages.sh):
# auto (PGDG when reachable, else the mirror built here), pgdg, mirror or debian.
export IRONTRACK_PG_PACKAGES ?= auto
# The PGDG-shaped mirror for this recipe (scripts/pgdg-mirror.sh; only its path here, no build).
export IRONTRACK_PGDG_MIRROR ?= $(shell scripts/pgdg-mirror.sh --path)
# The fleet of molecule/fleet: container/network name prefix and the proxy's published HTTPS port.
export IRONTRACK_FLEET ?= irontrack-fleet
export IRONTRACK_FLEET_HTTPS_PORT ?= 9443
# The VM of molecule/kernel (a real kernel): SSH forwarded from 127.0.0.1 only.
export IRONTRACK_VM_SSH_PORT ?= 2222
export PY_COLORS := 0
export ANSIBLE_FORCE_COLOR := 0
LOCAL_INVENTORY := inventories/local
PLAYBOOKS := $(wildcard playbooks/*.yml) bench/playbook.yml

.PHONY: help deps image vm-image packages mirror up up-vm down converge smoke tune bench \
        bench-service bench-metrics bench-health bench-reconverge bench-variants test lint test-service test-roles test-host test-redeploy molecule \
        molecule-kernel molecule-fleet run bench-statement-cache clean lock lock-upgrade audit

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install what this machine needs (Debian packages, dockerd, virtualenv)
	scripts/bootstrap.sh

image: deps ## build (or reuse) the Debian 12 systemd host image
	scripts/host-image.sh >/dev/null

packages: deps ## resolve IRONTRACK_PG_PACKAGES (auto/pgdg/mirror/debian); build the mirror if it is used
	scripts/pg-packages.sh

mirror: deps ## build (once, cached by recipe hash) the PGDG-shaped mirror from Debian's sources
	scripts/pgdg-mirror.sh

up: image packages ## bring up the provisioned local host and smoke-test it
	molecule create
	molecule converge
	ansible-playbook -i $(LOCAL_INVENTORY) playbooks/smoke.yml
	@echo "local host $(IRONTRACK_INSTANCE) is up: https://app.localhost:$(IRONTRACK_HTTPS_PORT) (CA: $(IRONTRACK_SECRETS_DIR)/mkcert/rootCA.pem)"

vm-image: deps ## build (or reuse) the Debian 12 VM image of the kernel scenario
	scripts/vm-image.sh >/dev/null

up-vm: vm-image ## boot the kernel scenario's VM (real kernel), converge base, kernel, Valkey; leave it up
	molecule create -s kernel
	molecule converge -s kernel
	@echo "VM $(IRONTRACK_INSTANCE)-vm is up ($$(cat /var/tmp/$(IRONTRACK_INSTANCE)-vm/accel)): ssh -F /var/tmp/$(IRONTRACK_INSTANCE)-vm/ssh_config $(IRONTRACK_INSTANCE)-vm"

down: deps ## remove the local host and the VM
	molecule destroy
	molecule destroy -s kernel

converge: image packages ## re-run the production playbook on the local host
	molecule converge

smoke: deps ## smoke-test the local host through TLS
	ansible-playbook -i $(LOCAL_INVENTORY) playbooks/smoke.yml

tune: deps ## re-tune the local host (kernel + planner settings only)
	ansible-playbook -i $(LOCAL_INVENTORY) playbooks/tune.yml

# Every benchmark is one command of one entry point, `python -m bench` (bench/README.md);
# BENCH_ARGS passes options, e.g. make bench-service BENCH_ARGS='--rounds 1 -d 5'.
BENCH_ARGS ?=
BENCH_LOCAL := IRONTRACK_TEST_PGBOUNCER=$$(scripts/mirror-pgbouncer.sh) python -m bench

bench: deps ## the report's benchmark scenarios on the local host (results/<date>_<host>/), then the metrics overhead and the re-converge time
	IRONTRACK_BENCH_COMMAND="make bench $(BENCH_ARGS)" python -m bench host -i $(LOCAL_INVENTORY) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-metrics BENCH_ARGS=
	$(MAKE) --no-print-directory bench-reconverge BENCH_ARGS=

bench-reconverge: deps ## re-run playbooks/site.yml on the local host: wall time, changed count, slowest tasks (target ≤ 60 s, 0 changed), then the per-task floor
	python -m bench reconverge -i $(LOCAL_INVENTORY) --floor 60 $(BENCH_ARGS)

bench-variants: deps ## proxy ÷ direct for /ping and /me under each proxy and Granian setting, alternated (the local host)
	python -m bench variants $(BENCH_ARGS)

bench-metrics: deps ## /ping and /me with the service's metrics on vs off, alternated in one run (ratio on ÷ off)
	$(BENCH_LOCAL) metrics $(BENCH_ARGS)

bench-health: deps ## /health vs /ping on one Granian worker, alternated in one run (ratio), and the probes that reached PostgreSQL and Valkey
	$(BENCH_LOCAL) health $(BENCH_ARGS)

test: deps lint audit test-service test-roles molecule molecule-fleet molecule-kernel ## every test: the single host, the fleet, then the real-kernel VM (TCG here)

lock: deps ## re-resolve the locks after a pyproject.toml change (keeps existing pins; PyPI only)
	python scripts/lock.py compile

lock-upgrade: deps ## re-resolve every pin of both locks to the newest allowed version
	python scripts/lock.py compile --upgrade

audit: deps ## pip-audit both locks (known vulnerabilities; reviewed exceptions: audit-ignore.toml)
	python scripts/audit.py

lint: deps ## ruff, role docs, ansible-lint (production profile), syntax check, alert rules (promtool)
	ruff check .
	ruff format --check .
	python scripts/lock.py check
	python scripts/role-docs.py --check
	ansible-lint --nocolor
	for p in $(PLAYBOOKS); do ansible-playbook -i inventories/production --syntax-check "$$p"; done
	promtool=$$(scripts/promtool.sh); \
	  "$$promtool" check rules roles/monitoring/files/irontrack.rules.yml; \
	  "$$promtool" test rules tests/monitoring/rules_test.yml

test-service: deps ## service tests against real PostgreSQL 18, PgBouncer (>= 1.21, the mirror's) and Valkey
	IRONTRACK_TEST_PGBOUNCER=$$(scripts/mirror-pgbouncer.sh) pytest tests/service

test-roles: deps ## host-less tests: PostgreSQL drop-in on a real PostgreSQL 18, guard rails, bench tooling, releases
	pytest tests/roles tests/bench

molecule: image packages ## create → converge → idempotence → verify (testinfra + smoke) → destroy
	molecule test 2>&1 | tee .molecule-test.log || { python scripts/failure-summary.py .molecule-test.log; exit 1; }

molecule-fleet: image packages ## the fleet (proxy, app1, app2, db, cache, backup on one network): converge, idempotence, failover, rolling deploy, WAL over SSH to the backup host
	molecule test -s fleet 2>&1 | tee .molecule-fleet.log || { python scripts/failure-summary.py .molecule-fleet.log; exit 1; }

molecule-kernel: vm-image ## the same on a real kernel (QEMU VM, TCG here: 7 min idle, 16-24 min under load): every sysctl and the open-files limit live, retune, reboot
	molecule test -s kernel 2>&1 | tee .molecule-kernel.log || { python scripts/failure-summary.py .molecule-kernel.log; exit 1; }

test-host: deps ## the testinfra suite against the running local host
	pytest tests/host --hosts=docker://$(IRONTRACK_INSTANCE)

test-redeploy: deps ## redeploy the running local host twice; no request may fail
	IRONTRACK_INVENTORY=$(LOCAL_INVENTORY) pytest tests/redeploy --hosts=docker://$(IRONTRACK_INSTANCE)

run: deps ## run the service on 127.0.0.1:8000 against real PostgreSQL 18, PgBouncer and Valkey
	$(MAKE) -C service run VENV=$(VENV)

bench-service: deps ## the service alone on local Granian: /ping, /me (one token and 20000 users' tokens), signup
	$(BENCH_LOCAL) service $(BENCH_ARGS)

bench-statement-cache: deps ## /health and signup with the service's statement cache on vs off (PgBouncer >= 1.21, one run)
	$(BENCH_LOCAL) statement-cache $(BENCH_ARGS)

clean: ## remove the local host, the VM, the virtualenv and generated files
	-molecule destroy
	-molecule destroy -s kernel
	rm -rf $(VENV) .secrets results
