"""From what the edges ask to the one local dograhctl a worker host runs next: its
command line (the drain as the admin asked), what its status says it is doing, and why
nothing can run."""

from __future__ import annotations

from dograh_systemd import wire
from dograh_systemd.cluster.converge import Local, Step, next_step

AT_REST = Local(api=2, release="r2", previous_release="r1",
                releases={"r1": "ready", "r2": "ready", "r3": "building"}, restarted=0)


def asked(release: str | None = None, restart: int = 0, timeout: int | None = None,
          stop_at_once: bool = False, generation: int = 1) -> wire.Desired:
    return wire.Desired(format=1, generation=generation, api=3, release=release,
                        unknown_migrations=False, restart=restart,
                        drain={"timeout": timeout, "stop_at_once": stop_at_once})


def test_a_release_missing_or_unready_here_is_refused_with_its_state() -> None:
    assert next_step(asked(release="r9"), 0, AT_REST, {}) == Step(
        [], "", refused="release r9 is not ready here (missing)")
    assert next_step(asked(release="r3"), 0, AT_REST, {}) == Step(
        [], "", refused="release r3 is not ready here (building)")


def test_the_release_before_is_rolled_back_to_and_others_deployed() -> None:
    assert next_step(asked(release="r1", timeout=30), 0, AT_REST, {}) == Step(
        ["rollback", "--drain-timeout=30"], "rolling back to r1")
    ahead = Local(api=2, release="r1", previous_release="", releases=AT_REST.releases,
                  restarted=0)
    assert next_step(asked(release="r2", stop_at_once=True), 0, ahead, {}) == Step(
        ["deploy", "r2", "--no-drain"], "deploying r2")
    assert next_step(asked(release=""), 0, AT_REST, {}) == Step(
        ["deploy", "--in-place"], "deploying its config app, in place")


def test_a_restart_then_the_count_asked() -> None:
    assert next_step(asked(restart=4, timeout=0), 0, AT_REST, {}) == Step(
        ["restart", "--drain-timeout=0"], "restarting", restart=4)
    done = Local(api=2, release="r2", previous_release="r1", releases=AT_REST.releases,
                 restarted=4)
    assert next_step(asked(restart=4), 0, done, {}) == Step(
        ["scale", "3"], "scaling to 3 API workers", finishes=True)
    assert next_step(asked(restart=4), 1, done, {}) is None  # carried out already
