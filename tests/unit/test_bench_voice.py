"""The pure pieces of the voice benchmark: frames on the wire, percentiles, the CPU
split, the knee on frame round trips, and sizing an edge."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest

from bench import ramp, voice_cases, voice_report, voicegen


def point(calls: int, p99: float | None, lost: int = 0, held: int | None = None,
          **cpu: float) -> dict[str, Any]:
    return {"calls": calls, "held": calls if held is None else held, "rtt_p99_ms": p99,
            "lost": lost, "dropped": {}, "cpu": cpu}


# -- frames ------------------------------------------------------------------------------

def test_a_client_frame_is_final_masked_with_a_zero_key_and_carries_its_length() -> None:
    small = voicegen.client_frame(2, b"\xff" * 160)
    assert small[:2] == bytes([0x82, 0x80 | 126]) and struct.unpack("!H", small[2:4]) == (160,)
    assert small[4:8] == b"\0\0\0\0" and small[8:] == b"\xff" * 160
    tiny = voicegen.client_frame(8, struct.pack("!H", 1000))
    assert tiny == bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])


def test_server_frames_are_read_whole_and_a_partial_one_waits() -> None:
    text = bytes([0x81, 5]) + b"hello"
    binary = bytes([0x82, 126]) + struct.pack("!H", 300) + b"x" * 300
    frames, used = voicegen.server_frames(text + binary + binary[:7])
    assert frames == [(1, True, 2, 5), (2, True, 11, 300)]
    assert used == len(text) + len(binary)
    assert voicegen.server_frames(bytes([0x81]))[0] == []


def test_a_fragment_is_not_final_and_a_ping_shows_its_payload() -> None:
    data = bytes([0x01, 1]) + b"a" + bytes([0x89, 4]) + b"ping"
    frames, _ = voicegen.server_frames(data)
    assert frames == [(1, False, 2, 1), (9, True, 5, 4)]
    assert data[5:9] == b"ping"


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert voicegen.percentile(values, 50) == 50
    assert voicegen.percentile(values, 99) == 99
    assert voicegen.percentile([7.0], 99) == 7
    assert voicegen.percentile([], 50) is None


# -- where the CPU goes -------------------------------------------------------------------

def test_a_stat_line_gives_its_name_and_user_plus_system_ticks() -> None:
    line = "42 (nginx: worker (x)) S 1 42 42 0 -1 4194624 10 0 0 0 123 45 0 0 20 0 1 0 9 0 0"
    assert voicegen.parse_stat(line) == ("nginx: worker (x)", 168)


def test_processes_are_grouped_by_command_line_and_unit() -> None:
    group = voicegen.cpu_group
    assert group("nginx: worker process", "0::/system.slice/nginx.service") == "nginx"
    assert group("/opt/voicegen/bin/python voicegen.py --base x", "0::/") == "load"
    assert group("/opt/bench/bin/python -m dograh_systemd.worker --port 8000",
                 "0::/system.slice/system-dograh\\x2dapi.slice/dograh-api@8000.service") == "workers"
    # uvicorn --workers' children are multiprocessing processes: the unit names them.
    assert group("/opt/bench/bin/python -c from multiprocessing.spawn import spawn_main",
                 "0::/system.slice/bench-peer.service") == "workers"
    assert group("/lib/systemd/systemd-journald", "0::/system.slice/systemd-journald.service") \
        == "other"


def test_the_cpu_split_is_each_groups_ticks_over_the_window() -> None:
    before = {1: ("nginx", 100), 2: ("workers", 1000)}
    after = {1: ("nginx", 150), 2: ("workers", 1300), 3: ("workers", 100)}
    assert voicegen.cpu_split(before, after, seconds=10) == {"nginx": 0.05, "workers": 0.4}


# -- the knee on frames -------------------------------------------------------------------

def test_frames_fail_when_late_at_p99_lost_refused_or_dropped() -> None:
    assert not ramp.frames_fail(point(100, 59.9))
    assert ramp.frames_fail(point(100, 60.1))
    assert ramp.frames_fail(point(100, 10, lost=1))
    assert ramp.frames_fail(point(100, 10, held=99))
    assert ramp.frames_fail({**point(100, 10), "dropped": {"closed by the server": 1}})
    assert ramp.frames_fail(point(100, None))


def test_the_frame_knee_is_where_frames_fail_and_keep_failing() -> None:
    # 200 failed once, then passed afresh: noise, not the knee.
    points = [point(100, 5), point(200, 90), point(200, 20), point(300, 80), point(300, 95),
              point(250, 70), point(225, 30)]
    assert ramp.frame_knee(points) == 250
    assert ramp.frames_carried(points) == 225
    assert ramp.frame_knee([point(100, 5), point(200, 20)]) is None
    assert ramp.frames_carried([point(100, 5), point(200, 20)]) == 200
    assert ramp.frames_carried([point(60, 80)]) == 0


def test_steps_grow_in_round_numbers_and_halve_down_to_three_percent() -> None:
    steps = [60]
    while steps[-1] < 1000:
        steps.append(ramp.next_step(steps[-1], 1.25))
    assert steps == [60, 75, 94, 120, 150, 190, 240, 300, 380, 480, 600, 750, 940, 1200]
    assert ramp.next_step(1, 1.1) == 2
    assert ramp.between(150, 190) == 170
    assert ramp.between(150, 160) == 155
    assert ramp.between(150, 154) is None
    assert ramp.between(1000, 1100) == 1050
    assert ramp.between(0, 10) == 5


def test_cpu_per_thousand_calls_is_the_median_ratio_near_the_top_below_the_knee() -> None:
    points = [point(50, 5, nginx=0.5), point(200, 5, nginx=0.5), point(300, 5, nginx=0.6),
              point(400, 5, nginx=0.9), point(500, 900, nginx=0.7)]
    # 50 calls is below half of the 400 carried; 500 is past the knee.
    assert ramp.per_thousand(points, "nginx") == 2.25
    assert ramp.per_thousand([point(60, 80, nginx=1)], "nginx") is None


# -- several hosts ------------------------------------------------------------------------

def test_calls_per_host_and_hosts_per_edge() -> None:
    runs = [{"hosts": 1, "knee": 40}, {"hosts": 2, "knee": 78}, {"hosts": 3, "knee": 126}]
    assert ramp.calls_per_host(runs) == 40
    # 1.6 CPUs per 1,000 calls: one edge CPU relays 625 calls, 15.6 hosts of 40.
    assert ramp.hosts_per_edge(1.6, 40, 1.0) == 15.6
    assert ramp.hosts_per_edge(1.6, 40, 0.25) == 3.9
    assert ramp.hosts_per_edge(None, 40, 1.0) is None
    assert ramp.calls_per_host([{"hosts": 1, "knee": None}]) is None


# -- what is measured, and how it is read -----------------------------------------------

def row(case: voice_cases.Case, knee: int | None, nginx: float = 0.0,
        workers: float = 3.0) -> dict[str, Any]:
    return {**dataclasses.asdict(case), "knee": knee, "carried": knee or 0, "points": [],
            "cpu_per_1000": {"nginx": nginx, "workers": workers, "load": 1.0}}


def test_side_by_side_is_ours_and_each_peer_direct_and_behind_nginx_on_wss() -> None:
    cases = voice_cases.side_by_side_cases()
    assert len(cases) == 10 and all(c.tls and c.kind == "json" for c in cases)
    for workers in (2, 4):
        here = {(c.server, c.front) for c in cases if c.workers == workers}
        assert here == {("dograh-systemd", "nginx"), ("uvicorn --workers", "direct"),
                        ("gunicorn", "direct"), ("uvicorn --workers", "nginx"),
                        ("gunicorn", "nginx")}
    assert {(c.server, c.tls, c.front) for c in voice_cases.plain_cases()} == {
        ("dograh-systemd", False, "nginx"), ("uvicorn --workers", False, "direct"),
        ("gunicorn", False, "direct")}


def test_later_parts_compare_with_the_best_wss_peer_at_two_workers() -> None:
    Case = voice_cases.Case
    runs = [row(Case("gunicorn", 2), 200), row(Case("uvicorn --workers", 2, front="nginx"), 240),
            row(Case("uvicorn --workers", 4), 900),  # another worker count
            row(Case("gunicorn", 2, tls=False), 500)]  # not on TLS
    peer = Case("uvicorn --workers", 2, front="nginx")
    assert voice_cases.best_peer(runs) == peer
    # A peer that never reached its knee carried more than any that did.
    assert voice_cases.best_peer([*runs, row(Case("gunicorn", 2, front="nginx"), None)]) == \
        Case("gunicorn", 2, front="nginx")
    ours = Case("dograh-systemd", 2, front="nginx")
    assert voice_cases.cases("binary", runs) == [
        dataclasses.replace(ours, kind="binary"), dataclasses.replace(peer, kind="binary")]
    work = voice_cases.cases("work", runs)
    assert [(c.server, c.frame_cpu_ms) for c in work] == [
        ("dograh-systemd", 0.2), ("uvicorn --workers", 0.2),
        ("dograh-systemd", 1.0), ("uvicorn --workers", 1.0)]
    assert [c.change for c in voice_cases.cases("hop", [])] == list(voice_cases.CHANGES)
    with pytest.raises(SystemExit, match="--part side-by-side first"):
        voice_cases.cases("work", [])


def test_a_ramp_starts_lower_as_the_app_works_more_and_its_row_names_its_case() -> None:
    Case = voice_cases.Case
    assert [Case("gunicorn", 2, frame_cpu_ms=ms).start for ms in (0, 0.2, 1.0)] == [100, 50, 15]
    case = Case("gunicorn", 4, front="nginx", frame_cpu_ms=0.2)
    assert Case.of(row(case, 10)) == case
    assert case.label == "gunicorn, nginx N=4 wss json, 0.2 ms CPU a frame"
    assert Case("dograh-systemd", 2, tls=False, front="nginx").label == "dograh-systemd N=2 ws json"


def test_the_summary_compares_our_knee_with_the_best_peer_at_each_worker_count() -> None:
    Case = voice_cases.Case
    runs = [row(Case("dograh-systemd", 2, front="nginx"), 300, nginx=1.0),
            row(Case("uvicorn --workers", 2), 250), row(Case("gunicorn", 2, front="nginx"), 200),
            row(Case("dograh-systemd", 2, tls=False, front="nginx"), 500, nginx=1.0),
            row(Case("gunicorn", 2, tls=False), 400)]
    line = voice_report.against_best("wss, 2 workers", voice_report.rows_of(runs, workers=2))
    assert line is not None
    assert "our knee **300** calls, **1.20 times** the best peer's (uvicorn --workers " \
           "(own TLS), 250)" in line
    assert "4.00 CPUs per 1,000 through us, 3.00 on uvicorn --workers" in line
    assert "(TLS and the hop) is 1.00" in line
    plain = voice_report.against_best("ws", voice_report.rows_of(runs, tls=False))
    assert plain is not None and "**1.25 times**" in plain and "(the hop) is 1.00" in plain
    assert voice_report.against_best("none", runs[1:3]) is None  # ours not measured


def test_the_hops_share_falls_as_the_app_works_and_says_where_it_is_small() -> None:
    Case = voice_cases.Case
    ours, peer = Case("dograh-systemd", 2, front="nginx"), Case("uvicorn --workers", 2)
    runs = [row(ours, 300, nginx=1.0, workers=3.0), row(peer, 250),
            row(dataclasses.replace(ours, frame_cpu_ms=0.2), 120, nginx=1.0, workers=12.0),
            row(dataclasses.replace(peer, frame_cpu_ms=0.2), 110),
            row(dataclasses.replace(ours, frame_cpu_ms=1.0), 30, nginx=1.0, workers=50.0)]
    assert voice_report.hop_share(runs[0]) == 0.25
    summary = voice_report.work_summary(runs)
    assert summary == ("- nginx's share of a call's server-side CPU, by the app's work a "
                       "frame: 0 ms: 25%; 0.2 ms: 8%; 1 ms: 2%; under 10% from 0.2 ms of the "
                       "app's CPU a frame.")
    table = "\n".join(voice_report.work_lines(runs))
    assert "| 0.2 | dograh-systemd (nginx TLS) | 120 | 1.09 |" in table
    assert voice_report.work_summary(runs[:2]) is None  # no work measured


def test_each_change_of_the_hop_is_read_against_the_mean_of_the_two_ramps_as_shipped() -> None:
    ours = voice_cases.Case("dograh-systemd", 2, front="nginx")
    names = list(voice_cases.CHANGES)
    assert names[0] == "as shipped" and names[-1] == "as shipped, again"
    knees = dict(zip(names, (300, 400, 330, 340), strict=True))
    runs = [row(dataclasses.replace(ours, change=name), knee) for name, knee in knees.items()]
    table = "\n".join(voice_report.hop_lines(runs))
    assert "| nginx → workers over Unix sockets | 400 | 1.25 |" in table
    assert "| nginx: 1 worker process | 330 | 1.03 |" in table
    assert "stopped before its end" not in table
    cut = "\n".join(voice_report.hop_lines(runs[:3]))
    assert "| nginx → workers over Unix sockets | 400 | - |" in cut
    assert "stopped before its end" in cut
