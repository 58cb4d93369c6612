"""How many calls this host can hold, and what nginx needs to carry them.

Each call holds two connections in nginx (the client's and the worker's) and
an open file in its API worker. Debian's stock nginx.conf allows 768
connections per nginx worker, and systemd gives a service 1,024 open files:
a few hundred calls a host, whatever its CPUs. The package lifts both without
taking over nginx.conf: nginx's workers may open as many files as nginx's hard
limit allows (worker_rlimit_nofile, in a file nginx includes in its main
context; a reload applies it), worker_connections, which only nginx.conf's
events block can set, is raised to match by one edit that removal undoes, and
the API units get LimitNOFILE. What is left is the host's CPUs and memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import paths
from .context import Context
from .host.machine import Machine
from .nginx import worker_connections
from .record import Fleet
from .worker import contract


@dataclass(frozen=True)
class Ceiling:
    """Calls this host can hold, by what allows them."""

    nginx: int | None       # None: nginx does not run, or carries no call of this host's
    open_files: int | None  # None: no API worker runs here (an edge)
    memory: int | None
    # This host's nginx carries its calls (a worker host's are carried by its edges').
    front: bool = True

    @property
    def calls(self) -> int:
        return min(self.limits.values())

    @property
    def limits(self) -> dict[str, int]:
        """Each limit that applies, by name (nginx's only while nginx runs)."""
        found = {"nginx_connections": self.nginx, "open_files": self.open_files,
                 "memory": self.memory}
        return {name: limit for name, limit in found.items() if limit is not None}

    @property
    def binding(self) -> str:
        """The name of the limit the ceiling comes from."""
        return next(name for name, limit in self.limits.items() if limit == self.calls)

    @property
    def bound_by(self) -> str:
        return {"nginx_connections": "nginx's connections",
                "open_files": "the API workers' open files", "memory": "memory"}[self.binding]

    @property
    def short_of_memory(self) -> str | None:
        """What lifts a limit that binds before memory does; None when memory binds."""
        if self.nginx is None and self.front:
            return "systemctl start nginx"
        if self.bound_by == "memory":
            return None
        return ("dograhctl render raises nginx's limits and dograhctl restart the workers' "
                "(more API workers raise the open files too)")

    def describe(self) -> str:
        parts = [("nginx not running" if self.front else "nginx: the edges'")
                 if self.nginx is None else f"nginx {self.nginx}"]
        parts += [f"{name} {value}" for name, value in (("open files", self.open_files),
                                                        ("memory", self.memory))
                  if value is not None]
        return f"about {self.calls} calls, bound by {self.bound_by} ({', '.join(parts)})"


def measure_front(ctx: Context) -> Ceiling:
    """An edge's call ceiling: what its nginx carries (the calls are the worker hosts')."""
    return Ceiling(nginx=_nginx_calls(ctx) or 0, open_files=None, memory=None)


def measure(ctx: Context, fleet: Fleet, front: bool = True) -> Ceiling:
    """The host's call ceiling for ``fleet``, from what its processes really got; its own
    nginx counts only when it is the ``front`` of this host's calls."""
    machine = ctx.host.machine
    api = ctx.settings.api.role
    states = ctx.systemd.show(fleet.of(api.name))
    running = [state for state in states.values() if state.ready and state.pid]
    per_worker = [(_soft_open_files(machine, state.pid) or contract.WORKER_OPEN_FILES)
                  - contract.WORKER_FILES_KEPT for state in running]
    open_files = sum(per_worker) if per_worker else \
        len(fleet.of(api.name)) * (contract.WORKER_OPEN_FILES - contract.WORKER_FILES_KEPT)
    live = sum(load.calls for state in running
               if (load := contract.parse_status(state.status)) is not None)
    memory = machine.mem_available() // (ctx.settings.call_memory_kb * 1024) + live
    return Ceiling(nginx=_nginx_calls(ctx) if front else None, open_files=open_files,
                   memory=memory, front=front)


def _nginx_calls(ctx: Context) -> int | None:
    """Calls nginx's running workers can carry: two connections each."""
    workers = [worker for worker in ctx.host.machine.nginx_workers() if worker.accepting]
    if not workers:
        return None
    connections = worker_connections(ctx.files.read(paths.NGINX_CONF) or "") or 512
    return sum(min(connections, worker.open_files) for worker in workers) // 2


def _soft_open_files(machine: Machine, pid: int) -> int | None:
    limits = machine.open_file_limits(pid)
    return limits[0] if limits else None
