# The two commands the README opens with; both install what they need first.
.PHONY: setup test demo deb

setup:
	bash .ci/setup

# Lint, then unit tests and system tests on real systemd (needs root).
test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -v

# Boot a throwaway Debian container, install, dograhctl scale 6, show the fleet.
demo: setup
	.venv/bin/python -m tests.system.demo

# dist/dograh-systemd_<version>_all.deb, with its build dependencies installed first.
deb:
	bash .ci/build-deb
