"""doctor says what it asks: the running fleet or the configuration, and when they differ."""

from __future__ import annotations

from dograh_systemd import doctor, modes

from .conftest import context
from .fake_host import FakeHost

REGISTRY = "http://127.0.0.1:8000/api/v1/health/active-calls"


def registry_check(host: FakeHost) -> doctor.Check:
    ctx = context(host)
    return next(check for check in modes.choose(ctx.settings).checks(ctx)
                if check.name.startswith("call registry"))


def test_the_registry_is_asked_of_the_running_fleet(host: FakeHost) -> None:
    host.configure("FASTAPI_WORKERS=2\nDOGRAH_CALLS_PATH=/api/v1/health/active-calls\n")
    assert host.dograhctl("scale")[0] == 0
    host.machine.answers[REGISTRY] = (200, b'{"active_calls": 3}')
    check = registry_check(host)
    assert (check.ok, check.detail) == (
        True, "dograh-api@8000.service (the running fleet) holds 3 call(s)")
    host.machine.answers[REGISTRY] = (403, b"")
    check = registry_check(host)
    assert not check.ok
    assert check.fix == "check DOGRAH_DEVOPS_SECRET and DOGRAH_CALLS_HEADER"


def test_a_fleet_on_an_earlier_configuration_is_named_with_what_to_run(host: FakeHost) -> None:
    host.configure("FASTAPI_WORKERS=2\nDOGRAH_CALLS_PATH=/api/v1/health/active-calls\n")
    assert host.dograhctl("scale")[0] == 0
    host.configure("FASTAPI_WORKERS=2\nDOGRAH_CALLS_PATH=/api/v1/health/active-calls\n"
                   "DOGRAH_APP=api.app:app\n")  # set, not yet moved onto
    host.machine.answers[REGISTRY] = (404, b"")
    check = registry_check(host)
    assert not check.ok
    assert check.detail == ("dograh-api@8000.service (the running fleet, which runs an "
                            "earlier configuration) answers HTTP 404")
    assert check.fix == ("the running fleet runs an earlier configuration: move it onto the "
                         "configured app with dograhctl restart, then run doctor again")
