"""The commands of the command line, one function each, on the SDK's public objects.

Each imports what it needs when it runs. ``run``, ``exec`` and the terminal
handling are in :mod:`containerd_client.cli._run`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from containerd_client.cli import EXIT_CODES, Context, UsageError

if TYPE_CHECKING:
    from containerd_client.client import Client
    from containerd_client.containers import Container

#: Where a detached container's output goes (the shim appends to it): in its state folder.
DETACHED_LOG = "{id}-stdio.log"
#: Label on containers the command line made (its command line, for ``ps``).
COMMAND_LABEL = "containerd-client/cli.command"
#: Label set when an attached, kept container's task ended: its exit code (the task is deleted).
EXIT_LABEL = "containerd-client/cli.exit-code"


def dispatch(ctx: Context) -> int:
    """Run the command ``ctx.args`` names and return the exit code."""
    a = ctx.args
    name = a.subcommand
    if name in ("images", "image"):
        sub = {"list": "ls", "load": "import", "save": "export", "remove": "rm", "rmi": "rm"}
        action = sub.get(a.images_command, a.images_command)
        return int(_IMAGES[action](ctx))
    if name == "pull":
        return images_pull(ctx)
    if name in ("run", "exec"):
        from containerd_client.cli import _run

        return _run.run(ctx) if name == "run" else _run.exec_(ctx)
    aliases = {"namespace": "namespaces", "ns": "namespaces", "ls": "ps", "container": "ps"}
    return int(_COMMANDS[aliases.get(name, name)](ctx))


# -- daemon ------------------------------------------------------------------------


def version(ctx: Context) -> int:
    import containerd_client

    server = ctx.client().version()
    value = {
        "client": {"version": containerd_client.__version__, "python": sys.version.split()[0]},
        "server": {"version": server.version, "revision": server.revision},
    }
    if ctx.json:
        ctx.emit(value)
    else:
        ctx.out(
            f"Client:  containerd-client {containerd_client.__version__}"
            f" (Python {value['client']['python']})\n"
            f"Server:  containerd {server.version} ({server.revision})\n"
        )
    return 0


def namespaces(ctx: Context) -> int:
    from containerd_client.cli._format import labels_text

    items = sorted(ctx.client().namespaces.list(), key=lambda n: n.name)
    ctx.emit(
        [{"name": n.name, "labels": dict(n.labels)} for n in items],
        columns=("NAME", "LABELS"),
        rows=[(n.name, labels_text(n.labels)) for n in items],
    )
    return 0


def events(ctx: Context) -> int:
    from containerd_client.cli import _format

    count = ctx.args.count
    if count is not None and count < 1:
        raise UsageError("--count must be at least 1")
    filters = list(ctx.args.filter)
    if not filters and ctx.args.namespace:
        filters = [f"namespace=={ctx.args.namespace}"]
    seen = 0
    with ctx.client().subscribe(*filters) as sub:
        for event in sub:
            value = {
                "timestamp": event.timestamp,
                "namespace": event.namespace,
                "topic": event.topic,
                "container": event.container_id or None,
                "process": event.process_id or None,
            }
            if ctx.json:
                _format.print_json(value, ctx.stdout, lines=True)
            else:
                when = event.timestamp.isoformat() if event.timestamp else "-"
                extra = f" container={event.container_id}" if event.container_id else ""
                if event.process_id and event.process_id != event.container_id:
                    extra += f" process={event.process_id}"
                ctx.out(f"{when} {event.namespace} {event.topic}{extra}\n")
            seen += 1
            if count is not None and seen >= count:
                break
    return 0


def sweep(ctx: Context) -> int:
    a = ctx.args
    report = ctx.client().sweep(dry_run=a.dry_run, images=a.images, all_namespaces=a.all_namespaces)
    summary = report.summary()
    if ctx.json:
        ctx.emit(
            {
                "dry_run": report.dry_run,
                "removed": summary,
                "dead_sessions": list(report.dead_sessions),
                "namespaces": list(report.namespaces),
                "failed": list(report.failed),
            }
        )
    else:
        verb = "would remove" if report.dry_run else "removed"
        counts = ", ".join(f"{n} {kind}" for kind, n in summary.items() if n) or "nothing"
        ctx.out(f"{verb}: {counts} ({len(report.dead_sessions)} dead sessions)\n")
        for line in report.failed:
            ctx.err(f"failed: {line}")
    return EXIT_CODES["error"] if report.failed else 0


# -- images --------------------------------------------------------------------------


def images_ls(ctx: Context) -> int:
    from containerd_client.cli._format import age, human_size, short_digest
    from containerd_client.errors import ContainerdError

    client = ctx.client()
    store = client.images
    rows, values = [], []
    for img in sorted(store.list(), key=lambda i: i.name):
        try:
            size: int | None = sum(layer.size for layer in store.layers(img))
        except ContainerdError:
            size = None  # no content for this platform here
        values.append(
            {
                "name": img.name,
                "digest": img.target.digest,
                "media_type": img.target.media_type,
                "size": size,
                "created": img.created_at,
                "labels": dict(img.labels),
            }
        )
        rows.append((img.name, short_digest(img.target.digest), human_size(size), age(img.created_at)))
    ctx.emit(values, columns=("NAME", "DIGEST", "SIZE", "CREATED"), rows=rows)
    return 0


def images_pull(ctx: Context) -> int:
    # A pulled image is the user's: no session label (a sweep must never take it).
    client = ctx.client(session_label=False)
    platform = ctx.args.platform
    progress = None
    if not ctx.json and not ctx.args.quiet:
        ctx.err(f"pulling {ctx.args.ref} ...")
        if _is_terminal(ctx.stderr):
            from containerd_client.pull import TqdmProgress

            progress = TqdmProgress(file=ctx.stderr)  # logs instead when tqdm is missing
    try:
        img = client.pull(ctx.args.ref, platform=platform, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    ctx.emit(
        {"name": img.name, "digest": img.target.digest},
        columns=("NAME", "DIGEST"),
        rows=[(img.name, img.target.digest)],
    )
    return 0


def images_import(ctx: Context) -> int:
    a = ctx.args
    client = ctx.client(session_label=False)
    src: Any = sys.stdin.buffer if a.file == "-" else a.file
    if a.file != "-" and not os.path.isfile(a.file):
        raise UsageError(f"no such file: {a.file}")
    imported = client.images.import_archive(src, name=a.name, platform=a.platform)
    ctx.emit(
        [{"name": i.name, "digest": i.target.digest} for i in imported],
        columns=("NAME", "DIGEST"),
        rows=[(i.name, i.target.digest) for i in imported],
    )
    return 0


def images_export(ctx: Context) -> int:
    a = ctx.args
    client = ctx.client()
    if a.file == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a tar to a terminal: give a file or redirect stdout")
        client.images.export(_binary_stdout(ctx), *a.names, platform=a.platform)
    else:
        client.images.export(a.file, *a.names, platform=a.platform)
        if not ctx.json:
            ctx.err(f"exported {len(a.names)} image(s) to {a.file}")
    return 0


def images_rm(ctx: Context) -> int:
    from containerd_client.errors import ContainerdError

    store = ctx.client().images
    code = 0
    for name in ctx.args.names:
        try:
            store.delete(name)
        except ContainerdError as exc:
            ctx.report(exc)
            code = EXIT_CODES["error"]
        else:
            if not ctx.json:
                ctx.out(f"{name}\n")
    return code


_IMAGES: dict[str, Callable[[Context], int]] = {
    "ls": images_ls,
    "pull": images_pull,
    "import": images_import,
    "export": images_export,
    "rm": images_rm,
}


# -- containers ----------------------------------------------------------------------


def task_states(client: Client) -> dict[str, Any]:
    """Every task of the namespace by container id (one ``Tasks.List``)."""
    from containerd_client._pb import api
    from containerd_client._pb.containerd.services.tasks.v1 import tasks_pb2

    resp = client.call(api.Tasks.List, tasks_pb2.ListTasksRequest(), idempotent=True)
    return {t.id: t for t in resp.tasks}


_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "pausing"}


def status_of(task: Any, labels: dict[str, str]) -> tuple[str, int | None]:
    """(``running``/``exited``/``created``..., exit code or None) of a container."""
    if task is None:
        code = labels.get(EXIT_LABEL)
        if code is not None and code.lstrip("-").isdigit():
            return "exited", int(code)
        return "created", None
    status = _STATUS.get(task.status, "unknown")
    if status == "stopped":
        return "exited", int(task.exit_status)
    return status, None


def ps(ctx: Context) -> int:
    from containerd_client.cli._format import age

    client = ctx.client()
    tasks = task_states(client)
    rows, values = [], []
    for c in sorted(client.containers(), key=_created, reverse=True):
        info = c.info()
        status, code = status_of(tasks.get(c.id), dict(info.labels))
        if status != "running" and not ctx.args.all:
            continue
        ports = [f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in c.ports]
        args = (info.spec or {}).get("process", {}).get("args") or []
        command = info.labels.get(COMMAND_LABEL) or " ".join(args)
        task = tasks.get(c.id)
        values.append(
            {
                "id": c.id,
                "image": info.image,
                "command": command,
                "created": info.created_at,
                "status": status,
                "exit_code": code,
                "pid": int(task.pid) if task is not None and task.pid else None,
                "ports": ports,
                "network": c.network,
                "labels": dict(info.labels),
            }
        )
        shown = f"Exited ({code})" if status == "exited" and code is not None else status.capitalize()
        short = command if len(command) <= 24 else command[:21] + "..."
        rows.append((c.id, info.image, short, age(info.created_at), shown, ", ".join(ports)))
    if ctx.args.quiet and not ctx.json:
        ctx.out("".join(f"{v['id']}\n" for v in values))
        return 0
    ctx.emit(values, columns=("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"), rows=rows)
    return 0


def _created(container: Container) -> float:
    when = container.info().created_at
    return when.timestamp() if when is not None else 0.0


def _for_each(ctx: Context, ids: list[str], action: Callable[[Container], None]) -> int:
    """Do ``action`` on each container; an error is a line on stderr and exit code 1 (the rest go on)."""
    from containerd_client.cli import exit_code_for
    from containerd_client.errors import ContainerdError

    client = ctx.client()
    code = 0
    for cid in ids:
        try:
            action(client.load_container(cid))
        except ContainerdError as exc:
            ctx.report(exc)
            code = code or exit_code_for(exc)
        else:
            if not ctx.json:
                ctx.out(f"{cid}\n")
    return code


def stop(ctx: Context) -> int:
    timeout = ctx.args.time
    if timeout < 0:
        raise UsageError("--time must not be negative")
    return _for_each(ctx, ctx.args.containers, lambda c: _stop_one(c, timeout))


def _stop_one(container: Container, timeout: float) -> None:
    container.stop(timeout)


def kill(ctx: Context) -> int:
    from containerd_client.errors import FailedPreconditionError, StatusCode

    sig = ctx.args.signal
    sig = int(sig) if sig.isdigit() else sig

    def one(c: Container) -> None:
        task = c.task()
        if task.status().value != "running":
            raise FailedPreconditionError(f"container {c.id} is not running", StatusCode.FAILED_PRECONDITION)
        task.kill(sig)

    return _for_each(ctx, ctx.args.containers, one)


def remove_container(container: Container, *, force: bool) -> None:
    """Delete a container: an exited task first; a running one only with ``force``.

    The record's CNI attachment is torn down from its record in the state
    folder, so this works from any process.
    """
    from containerd_client.errors import FailedPreconditionError, NotFoundError, StatusCode

    try:
        task = container.task()
    except NotFoundError:
        task = None
    if task is not None:
        status = task.status().value
        if status in ("running", "paused", "pausing") and not force:
            raise FailedPreconditionError(
                f"container {container.id} is {status}: stop it first, or use rm -f",
                StatusCode.FAILED_PRECONDITION,
            )
        task.force_delete()
    container.delete(force=True)


def rm(ctx: Context) -> int:
    force = ctx.args.force
    return _for_each(ctx, ctx.args.containers, lambda c: remove_container(c, force=force))


def logs(ctx: Context) -> int:
    a = ctx.args
    if a.tail is not None and a.tail < 0:
        raise UsageError("--tail must not be negative")
    container = ctx.client().load_container(a.container)
    out = _binary_stdout(ctx)
    raw = os.path.join(container.bundle_dir, DETACHED_LOG.format(id=container.id))
    if os.path.exists(raw):
        _raw_logs(ctx, container, raw, out)
        return 0
    from containerd_client.errors import FailedPreconditionError, StatusCode

    try:
        data = container.logs(tail=a.tail)
    except FailedPreconditionError:
        raise FailedPreconditionError(
            f"container {container.id} keeps no log (it was not made by this command line)",
            StatusCode.FAILED_PRECONDITION,
        ) from None
    out.write(data)
    out.flush()
    if a.follow:
        path = os.path.join(container.bundle_dir, f"{container.id}-log")
        _follow_file(ctx, container, path, out, records=True)
    return 0


def _raw_logs(ctx: Context, container: Container, path: str, out: Any) -> None:
    tail = ctx.args.tail
    with open(path, "rb") as f:
        data = f.read()
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail else b""
    out.write(data)
    out.flush()
    if ctx.args.follow:
        _follow_file(ctx, container, path, out, records=False, start=os.path.getsize(path))


def _running(container: Container) -> bool:
    from containerd_client.errors import NotFoundError

    try:
        return container.task().status().value in ("running", "paused", "pausing", "created")
    except NotFoundError:
        return False


def _follow_file(
    ctx: Context, container: Container, path: str, out: Any, *, records: bool, start: int | None = None
) -> None:
    """Print what is appended to ``path`` until the container's task is no longer running."""
    import time

    from containerd_client.cio import _logs

    pos = os.path.getsize(path) if start is None else start
    pending = b""
    alive = True
    last_check = 0.0
    while True:
        with open(path, "rb") as f:
            f.seek(pos)
            chunk = f.read()
        if chunk:
            pos += len(chunk)
            if records:
                pending += chunk
                parts, used = _logs.parse_records(pending, frozenset({_logs.STDOUT, _logs.STDERR}))
                pending = pending[used:]
                chunk = b"".join(parts)
            out.write(chunk)
            out.flush()
            continue
        if not alive:
            return
        now = time.monotonic()
        if now - last_check >= 0.5:
            last_check = now
            alive = _running(container)  # one last read after it stopped
            continue
        time.sleep(0.1)


def stats(ctx: Context) -> int:
    """One sample of each running (or named) container; with ``--stream``, a
    table every ``--interval`` seconds with CPU % since the last one (``--json``:
    a JSON line per container per sample), until Ctrl-C or ``--count`` tables."""
    import time

    from containerd_client.cli import _format

    a = ctx.args
    if a.interval <= 0:
        raise UsageError("--interval must be more than 0")
    if a.count is not None and (a.count < 1 or not a.stream):
        raise UsageError("--count takes a number of at least 1, and goes with --stream")
    client = ctx.client()
    if not a.stream:
        values, rows, code = _stats_sample(ctx, client, None)
        ctx.emit(values, columns=_STATS_COLUMNS, rows=rows)
        return code
    previous: dict[str, tuple[int, float]] = {}
    _stats_sample(ctx, client, previous, quiet=True)  # the base of the first CPU %
    shown = 0
    clear = not ctx.json and ctx.stdout.isatty()
    while a.count is None or shown < a.count:
        time.sleep(a.interval)
        values, rows, _code = _stats_sample(ctx, client, previous)
        if ctx.json:
            for value in values:
                _format.print_json(value, ctx.stdout, lines=True)
        else:
            ctx.out(("\x1b[H\x1b[J" if clear else "") + _format.table(_STATS_COLUMNS_CPU, rows))
        shown += 1
    return 0


_STATS_COLUMNS = ("CONTAINER ID", "CPU TIME", "MEM USAGE / LIMIT", "PIDS")
_STATS_COLUMNS_CPU = ("CONTAINER ID", "CPU %", "CPU TIME", "MEM USAGE / LIMIT", "PIDS")


def _stats_sample(
    ctx: Context, client: Any, previous: dict[str, tuple[int, float]] | None, *, quiet: bool = False
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], int]:
    """``(JSON values, table rows, exit code)`` of one sample. With ``previous``
    (container -> CPU ns and time of the last sample, updated here), rows and
    values carry the CPU % since then; a container seen first has none yet."""
    import time

    from containerd_client.cli._format import human_size
    from containerd_client.errors import ContainerdError

    if ctx.args.containers:
        ids = list(ctx.args.containers)
    else:
        ids = sorted(i for i, t in task_states(client).items() if t.status == 2)
    rows: list[tuple[Any, ...]] = []
    values: list[dict[str, Any]] = []
    code = 0
    for cid in ids:
        try:
            m = client.load_container(cid).task().stats()
        except ContainerdError as exc:
            if not quiet:
                ctx.report(exc)
            code = EXIT_CODES["error"]
            continue
        now = time.monotonic()
        mem = m.memory.usage if m.memory else None
        limit = m.memory.limit if m.memory else None
        cpu = m.cpu.usage_ns if m.cpu else None
        pids = m.pids.current if m.pids else None
        value: dict[str, Any] = {"id": cid, "cpu_ns": cpu, "memory": mem, "memory_limit": limit}
        value |= {"pids": pids, "timestamp": m.timestamp}
        limit_text = "-" if not limit or limit >= 1 << 60 else human_size(limit)
        cpu_text = "-" if cpu is None else f"{cpu / 1e9:.2f}s"
        row: tuple[Any, ...] = (cid, cpu_text, f"{human_size(mem)} / {limit_text}", pids)
        if previous is not None:
            percent = None
            last = previous.get(cid)
            if cpu is not None:
                if last is not None and now > last[1]:
                    percent = max(0.0, (cpu - last[0]) / ((now - last[1]) * 1e9) * 100)
                previous[cid] = (cpu, now)
            value["cpu_percent"] = None if percent is None else round(percent, 2)
            row = (row[0], "-" if percent is None else f"{percent:.2f}%", *row[1:])
        values.append(value)
        rows.append(row)
    return values, rows, code


def inspect(ctx: Context) -> int:
    """Each container's record, task state and network as JSON (always: it is for reading whole)."""
    import attrs

    from containerd_client.cli import _format, exit_code_for
    from containerd_client.errors import ContainerdError

    client = ctx.client()
    tasks = task_states(client)
    found: list[dict[str, Any]] = []
    code = 0
    for cid in ctx.args.containers:
        try:
            c = client.load_container(cid)
        except ContainerdError as exc:
            ctx.report(exc)
            code = code or exit_code_for(exc)
            continue
        info = c.info()
        task = tasks.get(c.id)
        status, exit_code = status_of(task, dict(info.labels))
        options = info.runtime_options
        found.append(
            {
                "id": c.id,
                "image": info.image,
                "labels": dict(info.labels),
                "runtime": {
                    "name": info.runtime,
                    "options": attrs.asdict(options) if options is not None else None,
                },
                "snapshotter": info.snapshotter,
                "snapshot_key": info.snapshot_key,
                "created": info.created_at,
                "updated": info.updated_at,
                "status": status,
                "exit_code": exit_code,
                "pid": int(task.pid) if task is not None and task.pid else None,
                "network": c.network,
                "ports": [attrs.asdict(p) for p in c.ports],
                "spec": dict(info.spec),
            }
        )
    _format.print_json(found, ctx.stdout)
    return code


def split_copy_path(text: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` -> (container, path); a host path -> (None, path), as ``docker cp``.

    A host path with a colon in it starts with ``/`` or ``.`` (``./a:b``);
    ``-`` is a tar on stdin or stdout.
    """
    if text == "-" or text.startswith(("/", ".")) or ":" not in text:
        return None, text
    container, _, path = text.partition(":")
    return container, path


def cp(ctx: Context) -> int:
    """Copy between a container and the host (``-``: a tar on stdin or stdout), as ``docker cp``."""
    a = ctx.args
    src_container, src = split_copy_path(a.src)
    dst_container, dst = split_copy_path(a.dest)
    if (src_container is None) == (dst_container is None):
        raise UsageError(
            "cp copies between a container and the host: exactly one of SRC and DEST is CONTAINER:PATH"
        )
    if src_container is not None:
        container = ctx.client().load_container(src_container)
        if dst == "-":
            chunks, _stat = container.get_archive(src)
            out = _binary_stdout(ctx)
            for chunk in chunks:
                out.write(chunk)
            out.flush()
        else:
            stat = container.copy_out(src, dst)
            if ctx.json:
                ctx.emit({"copied": a.src, "to": dst, "name": stat.name, "size": stat.size})
        return 0
    assert dst_container is not None
    container = ctx.client().load_container(dst_container)
    if src == "-":
        container.put_archive(dst, sys.stdin.buffer)
    else:
        container.copy_in(src, dst)
    if ctx.json:
        ctx.emit({"copied": a.src, "to": a.dest})
    return 0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _binary_stdout(ctx: Context) -> Any:
    buffer = getattr(ctx.stdout, "buffer", None)
    if buffer is None:
        raise UsageError("binary output needs a real stdout")
    ctx.stdout.flush()
    return buffer


_COMMANDS: dict[str, Callable[[Context], int]] = {
    "version": version,
    "namespaces": namespaces,
    "events": events,
    "sweep": sweep,
    "ps": ps,
    "stop": stop,
    "kill": kill,
    "rm": rm,
    "logs": logs,
    "stats": stats,
    "inspect": inspect,
    "cp": cp,
}
