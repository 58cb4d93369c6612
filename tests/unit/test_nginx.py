"""nginx -t's complaint, and a reload that waits for new workers, on the fake host."""

from __future__ import annotations

import pytest

from dograh_systemd.errors import DograhError
from dograh_systemd.host.commands import Completed
from dograh_systemd.nginx import Nginx

from .fake_host import FakeHost, NginxProcess


def failing_test(host: FakeHost, monkeypatch: pytest.MonkeyPatch, stderr: str) -> str:
    """What ``Nginx.test`` says when ``nginx -t`` prints ``stderr`` and fails."""
    monkeypatch.setattr(host, "run", lambda argv, timeout=None: Completed(1, "", stderr))
    with pytest.raises(DograhError) as failed:
        Nginx(host).test()
    return str(failed.value)


def test_nginx_t_names_its_first_emerg_line(host: FakeHost,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = ("nginx: [warn] the \"ssl\" directive is deprecated\n"
              "  nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/x.conf:3  \n"
              "nginx: [emerg] second complaint\n"
              "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    assert failing_test(host, monkeypatch, stderr) == (
        "nginx -t failed: nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/x.conf:3")


def test_without_an_emerg_line_the_first_line_is_named(host: FakeHost,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "\n nginx: [alert] could not open error log  \nsecond\n"
    assert failing_test(host, monkeypatch, stderr) == (
        "nginx -t failed: nginx: [alert] could not open error log")
    assert failing_test(host, monkeypatch, "") == "nginx -t failed: no output"


def test_a_passing_test_says_nothing(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(host, "run", lambda argv, timeout=None: asked.append(argv)
                        or Completed(0, "", "nginx: [warn] only a warning\n"))
    Nginx(host).test()
    assert asked == [["nginx", "-t", "-q"]]


def test_a_reload_returns_once_only_new_workers_accept(host: FakeHost) -> None:
    host.nginx_processes = [NginxProcess(7, True, host.clock.now, connections=3)]
    started = host.clock.now
    Nginx(host).reload()
    assert [(p.pid, p.accepting) for p in host.nginx_processes] == [
        (7, False), (host.next_pid, True)]
    # and the old worker is given a moment to close its listeners
    assert host.clock.now - started == pytest.approx(0.05)


def test_a_stopped_nginx_is_not_reloaded(host: FakeHost) -> None:
    host.nginx_running = False
    host.units.pop("nginx.service", None)
    events = len(host.log)
    Nginx(host).reload()
    assert not [e for e in host.log[events:] if "nginx" in e]


def test_old_workers_still_accepting_fail_the_reload_at_its_timeout(
        host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "_reload_nginx_processes", lambda: None)  # they keep accepting
    started = host.clock.now
    with pytest.raises(DograhError, match=r"^reloading nginx failed: old worker processes "
                                          r"still accept after 3s \(see journalctl -u nginx\)$"):
        Nginx(host).reload(timeout=3)
    assert 3 <= host.clock.now - started <= 3.03  # it looks every 20 ms


def test_a_moment_with_no_worker_accepting_is_not_taken_for_done(
        host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the old workers' retitle and the new ones' start, nobody accepts."""
    host.nginx_processes = [NginxProcess(7, True, host.clock.now)]
    started = host.clock.now

    def retitle_only() -> None:
        host.nginx_processes[0].accepting = False
    monkeypatch.setattr(host, "_reload_nginx_processes", retitle_only)
    host.after(0.11, lambda: host.nginx_processes.append(NginxProcess(8, True, host.clock.now)))
    Nginx(host).reload()
    assert host.clock.now - started >= 0.1 + 0.05
