# The two commands the README opens with; both install what they need first.
.PHONY: setup test demo demo-dograh deb changelog bench bench-capacity bench-voice bench-hosts

setup:
	bash .ci/setup

# Lint, then unit tests and system tests on real systemd (needs root).
test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -v

# Boot a throwaway Debian container, install, dograhctl scale 6, show the fleet.
demo: setup
	.venv/bin/python -m tests.system.demo

# The real Dograh (../shared/dograh's bundles) on Debian 13, offline: release make, deploy, a call.
demo-dograh: setup
	.venv/bin/python -m tests.system.demo --dograh

# dist/dograh-systemd_<version>_all.deb, with its build dependencies installed first.
deb:
	bash .ci/build-deb

# After raising __version__ in dograh_systemd/__init__.py: its debian/changelog
# entry (dch, from devscripts); tests/unit/test_version.py checks they agree.
changelog:
	dch --newversion "$$(python3 -c 'import dograh_systemd; print(dograh_systemd.__version__)')" \
		--distribution unstable "Release $$(python3 -c 'import dograh_systemd; print(dograh_systemd.__version__)')."

# Benchmarks against uvicorn --workers and gunicorn, side by side in one run:
# bench/results/report.md and PNG plots.
bench: setup
	.venv/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	.venv/bin/python -m bench.run

# Capacity: calls held, loop lag and memory as calls ramp up, against the
# same peers: bench/results/capacity.md and capacity.png.
bench-capacity: setup
	.venv/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	.venv/bin/python -m bench.capacity

# Voice traffic on wss:// and ws://: calls streaming a 20 ms frame each way,
# frame round trips and where the CPU goes, against the same peers direct and
# behind nginx; the app's work per frame; what makes the nginx hop cheaper:
# bench/results/voice.md and voice.png.
bench-voice: setup
	.venv/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	.venv/bin/python -m bench.voice

# Several hosts: voice calls and HTTP requests/s through one edge for 1, 2 and
# 3 worker hosts held to a fixed CPU quota each: bench/results/hosts.md.
bench-hosts: setup
	.venv/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	.venv/bin/python -m bench.hosts

# How many deliberate bugs in the core modules the unit tests catch (mutmut;
# slow, so not part of test): bench/results/mutation.md.
mutate: setup
	.venv/bin/pip install -q --disable-pip-version-check -e '.[mutate]'
	.venv/bin/python -m bench.mutation
