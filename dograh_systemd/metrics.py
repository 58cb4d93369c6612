"""This host's fleet in Prometheus' text exposition format.

dograh-metrics.timer writes it where node-exporter's textfile collector reads
it (no daemon and no port of our own), the way Debian's
prometheus-node-exporter-collectors do. Names follow Prometheus' conventions:
the ``dograh_`` prefix, base units (seconds), ``_total`` for counters, points
in time as ``*_timestamp_seconds``; per process the labels ``unit`` and
``role``, and on an edge ``host`` for each worker host. A family is written
only when it has a sample, once, with its HELP and TYPE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import __version__, capacity, certificates, floating, front, paths
from .cluster.survey import Survey
from .context import Context
from .errors import DograhError
from .record import Fleet
from .status import FleetStatus, InstanceStatus
from .upstream import Member

# Every metric this module writes: name -> (type, help). Tests check the text carries
# each of them, and the shipped alert rules and dashboard use nothing else.
METRICS: dict[str, tuple[str, str]] = {
    "dograh_build_info": (
        "gauge", "Always 1: the package's version and the release the fleet runs."),
    "dograh_up": (
        "gauge", "1 while the unit is up (active; an API worker: READY), else 0. Units the "
                 "fleet record wants, and any other that serves."),
    "dograh_restarts_total": (
        "counter", "Automatic restarts systemd made of the unit (its NRestarts)."),
    "dograh_unit_start_timestamp_seconds": (
        "gauge", "When the unit last became active, in seconds since the epoch."),
    "dograh_live_calls": (
        "gauge", "Live calls the API worker holds, as a drain waits for them: the app's "
                 "own count where it has a call registry, else its WebSockets."),
    "dograh_app_calls": (
        "gauge", "Live calls the app's call registry counts in the API worker."),
    "dograh_app_calls_unknown": (
        "gauge", "1 while the API worker cannot read the app's count of calls (a drain "
                 "then counts it as busy), else 0."),
    "dograh_websockets": (
        "gauge", "Open WebSockets of the API worker."),
    "dograh_requests_in_flight": (
        "gauge", "HTTP requests the API worker is serving now."),
    "dograh_requests_served_total": (
        "counter", "HTTP requests and WebSocket calls the API worker finished."),
    "dograh_loop_lag_p95_seconds": (
        "gauge", "95th percentile of the API worker's event loop lag over the last 10 s."),
    "dograh_units_desired": (
        "gauge", "Units of the role the fleet record wants running."),
    "dograh_units_up": (
        "gauge", "Units of the role the fleet record wants that are up."),
    "dograh_upstream_members": (
        "gauge", "API workers in the nginx upstream, as the fleet record lists them."),
    "dograh_call_ceiling": (
        "gauge", "Calls this host can hold: the smallest of its limits."),
    "dograh_call_limit": (
        "gauge", "Calls each of this host's limits allows."),
    "dograh_call_ceiling_bound": (
        "gauge", "1 for the limit that binds the call ceiling, 0 for the others."),
    "dograh_mismatches": (
        "gauge", "Differences between the fleet record, systemd and nginx that dograhctl "
                 "status names."),
    "dograh_operation_at_work": (
        "gauge", "1 while a dograhctl carries out an operation (a scale, a deploy), else 0."),
    "dograh_last_deploy_state": (
        "gauge", "The last background deploy (dograh-deploy.service): 1 for its state."),
    "dograh_last_deploy_start_timestamp_seconds": (
        "gauge", "When the last background deploy started, in seconds since the epoch."),
    "dograh_last_deploy_end_timestamp_seconds": (
        "gauge", "When the last background deploy ended, in seconds since the epoch."),
    "dograh_certificate_expiry_timestamp_seconds": (
        "gauge", "When the site's TLS certificate expires, in seconds since the epoch."),
    "dograh_nginx_old_generations": (
        "gauge", "Generations of nginx worker processes that earlier reloads left running."),
    "dograh_nginx_old_workers": (
        "gauge", "nginx worker processes that earlier reloads left running."),
    "dograh_nginx_old_worker_calls": (
        "gauge", "Calls the nginx worker processes of earlier reloads still hold."),
    "dograh_nginx_old_generation_max_age_seconds": (
        "gauge", "Age of the oldest generation of nginx workers earlier reloads left."),
    "dograh_nginx_up": (
        "gauge", "1 while this host's nginx runs, else 0."),
    "dograh_keepalived_up": (
        "gauge", "1 while this edge's keepalived runs (it keeps the floating address with "
                 "the other edges), else 0."),
    "dograh_front_address_held": (
        "gauge", "1 while this edge's interface carries the floating address, else 0."),
    "dograh_front_address_changed_timestamp_seconds": (
        "gauge", "When this edge last took or gave up the floating address, in seconds "
                 "since the epoch, as its agent saw it."),
    "dograh_host_up": (
        "gauge", "1 while the worker host is registered in shape and the edge sends to it, "
                 "else 0."),
    "dograh_host_unhealthy": (
        "gauge", "1 while the worker host registers out of shape, else 0."),
    "dograh_host_upstream_members": (
        "gauge", "The worker host's API workers in the edge's nginx upstream."),
    "dograh_host_live_calls": (
        "gauge", "Live calls the worker host's API workers hold, as it registered."),
    "dograh_host_mismatches": (
        "gauge", "Differences the worker host names in its own status."),
}

DEPLOY_STATES = ("running", "succeeded", "failed")

Labels = Mapping[str, str]


@dataclass
class Exposition:
    """Samples by family, written in Prometheus' text format."""

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)

    def add(self, name: str, value: float, **labels: str) -> None:
        assert name in METRICS, f"{name} is not in METRICS"
        self.samples.setdefault(name, []).append((labels, value))

    def text(self) -> str:
        lines = []
        for name, samples in self.samples.items():
            kind, help_text = METRICS[name]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
        return "\n".join(lines) + "\n"


def for_fleet(ctx: Context, found: FleetStatus) -> Exposition:
    """A single host or a worker host: every unit of the fleet, and the host's own."""
    out = Exposition()
    record = ctx.store.load()
    fleet = record.fleet if record else Fleet()
    out.add("dograh_build_info", 1, version=__version__, release=fleet.release)
    api = ctx.settings.api.role.name
    for role, items in found.roles.items():
        wanted = set(fleet.of(role))
        for item in items:
            # A unit the record does not want is either on its way out or still starting:
            # shown only while it serves.
            if item.unit in wanted or item.ready:
                _instance(out, role, item, api_worker=role == api)
        out.add("dograh_units_desired", len(wanted), role=role)
        out.add("dograh_units_up", sum(1 for item in items if item.unit in wanted and item.ready),
                role=role)
    out.add("dograh_upstream_members", len(fleet.upstream))
    _ceiling(out, found.capacity)
    out.add("dograh_mismatches", len(found.mismatches))
    at_work = record is not None and record.operation is not None and ctx.host.lock_holder()
    out.add("dograh_operation_at_work", int(bool(at_work)))
    _last_deploy(out, ctx)
    return out


def for_edge(ctx: Context, upstream: tuple[Member, ...], survey: Survey | None,
             ceiling: capacity.Ceiling) -> Exposition:
    """An edge: each worker host as it registered (each also writes its own), the
    upstream, the call ceiling of the nginx that carries every call, and the edge's own
    deploy. ``survey``: None while etcd does not answer (then no host is told about)."""
    out = Exposition()
    out.add("dograh_build_info", 1, version=__version__, release="")
    out.add("dograh_upstream_members", len(upstream))
    for host, report in (survey.reports.items() if survey else ()):
        members = sum(1 for member in upstream if member.address == host.address)
        # Up: registered in shape, and sent to.
        out.add("dograh_host_up", int(members > 0), host=host.name)
        out.add("dograh_host_unhealthy", 0, host=host.name)
        out.add("dograh_host_live_calls", sum(member.calls for member in report.members),
                host=host.name)
        out.add("dograh_host_mismatches", len(report.mismatches), host=host.name)
    for host, trouble in (survey.trouble.items() if survey else ()):
        out.add("dograh_host_up", 0, host=host.name)
        out.add("dograh_host_unhealthy", int(trouble.answers), host=host.name)
    for host in [*survey.reports, *survey.trouble] if survey else ():
        out.add("dograh_host_upstream_members",
                sum(1 for member in upstream if member.address == host.address), host=host.name)
    _ceiling_of(out, ceiling)
    _last_deploy(out, ctx)
    return out


def with_site(out: Exposition, ctx: Context, generations: list[dict[str, float]]
              ) -> Exposition:
    """``out`` and this host's nginx site: whether nginx runs, the certificate it
    serves, and the nginx workers earlier reloads left (``generations``)."""
    out.add("dograh_nginx_up", int(ctx.systemd.is_active("nginx.service")))
    _certificate(out, ctx)
    _old_nginx(out, generations)
    return out


def with_front(out: Exposition, ctx: Context) -> Exposition:
    """``out`` and this edge's floating address, if it has one: its keepalived, whether
    it holds the address and since when. An interface it cannot read leaves the
    address out."""
    settings = ctx.settings
    if not settings.front_addresses:
        return out
    out.add("dograh_keepalived_up", int(ctx.systemd.is_active(paths.KEEPALIVED_UNIT)))
    try:
        held = floating.on_interface(ctx)
    except DograhError:
        return out
    for address in settings.front_addresses:
        out.add("dograh_front_address_held", int(address in held), address=address)
    noted = floating.noted(ctx.files)
    if noted is not None:
        out.add("dograh_front_address_changed_timestamp_seconds", noted.since)
    return out


def _instance(out: Exposition, role: str, item: InstanceStatus, api_worker: bool) -> None:
    """One unit; an API worker's counts too, from its Status line."""
    labels = {"unit": item.unit, "role": role}
    out.add("dograh_up", int(item.ready), **labels)
    out.add("dograh_restarts_total", item.restarts, **labels)
    if item.since:
        out.add("dograh_unit_start_timestamp_seconds", item.since, **labels)
    load = item.load
    if not api_worker or load is None:
        return  # not an API worker, or one that has not published its Status line yet
    out.add("dograh_live_calls", load.calls, **labels)
    if load.app_calls is not None:
        out.add("dograh_app_calls", load.app_calls, **labels)
    if load.app_calls is not None or load.app_error is not None:
        out.add("dograh_app_calls_unknown", int(load.app_error is not None), **labels)
    out.add("dograh_websockets", load.websockets, **labels)
    out.add("dograh_requests_in_flight", load.requests, **labels)
    out.add("dograh_requests_served_total", load.served, **labels)
    out.add("dograh_loop_lag_p95_seconds", load.lag_p95_ms / 1000, **labels)


def _ceiling(out: Exposition, found: Mapping[str, object]) -> None:
    limits = {key: found[key] for key in ("nginx", "open_files", "memory", "front")}
    _ceiling_of(out, capacity.Ceiling(**limits))  # type: ignore[arg-type]


def _ceiling_of(out: Exposition, ceiling: capacity.Ceiling) -> None:
    out.add("dograh_call_ceiling", ceiling.calls)
    for name, value in ceiling.limits.items():
        out.add("dograh_call_limit", value, limit=name)
        out.add("dograh_call_ceiling_bound", int(name == ceiling.binding), limit=name)


def _last_deploy(out: Exposition, ctx: Context) -> None:
    """The last background deploy, while systemd remembers it (until the next one, a
    reset-failed, or a reboot)."""
    state = ctx.systemd.show([paths.DEPLOY_UNIT])[paths.DEPLOY_UNIT]
    if state.load != "loaded" or state.active == "inactive":
        return
    now = ("failed" if state.active == "failed" else
           "succeeded" if state.sub == "exited" else "running")
    for name in DEPLOY_STATES:
        out.add("dograh_last_deploy_state", int(name == now), state=name)
    if state.since:
        out.add("dograh_last_deploy_start_timestamp_seconds", state.since)
    if state.exited and now != "running":
        out.add("dograh_last_deploy_end_timestamp_seconds", state.exited)


def _certificate(out: Exposition, ctx: Context) -> None:
    """The certificate nginx serves, when the site has TLS; one that cannot be read
    is left out (doctor says why)."""
    pair = front.serving(ctx.settings, ctx.files)
    if pair is None:
        return
    try:
        facts = certificates.read(ctx.host, pair)
    except DograhError:
        return
    out.add("dograh_certificate_expiry_timestamp_seconds", facts.not_after.timestamp(),
            certificate=str(pair.certificate), tls=ctx.settings.tls)


def _old_nginx(out: Exposition, generations: list[dict[str, float]]) -> None:
    out.add("dograh_nginx_old_generations", len(generations))
    out.add("dograh_nginx_old_workers", sum(g["workers"] for g in generations))
    out.add("dograh_nginx_old_worker_calls", sum(g["calls"] for g in generations))
    out.add("dograh_nginx_old_generation_max_age_seconds",
            round(max((g["age"] for g in generations), default=0.0), 3))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escaped(value)}"' for key, value in labels.items()) + "}"


def _escaped(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
