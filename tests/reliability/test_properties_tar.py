"""Property tests of the archive safety check: it accepts exactly the archives that stay inside their root.

The oracle is the real file system, not the SDK's code: each generated
archive's links are made as real symlinks under a root folder (its parent
holds nothing else, and no generated name can climb back into it), and
``os.path.realpath`` says where each link leads. A link "stays inside" if
that is the root or below it. Hard links are resolved from the root, as tar
extractors do. Member names with ``..`` or a leading ``/`` are refused by
policy, whatever they resolve to.

Archives whose links may form a cycle are left to the unit tests (a loop
is refused, but ``realpath`` does not say where a loop "leads").
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path

import attrs
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from containerd_client._archive import ArchiveError, ArchiveReader, UnsafeArchiveError

# Links live at the root and in two real folders; "x" never exists (a dangling name).
LINK_NAMES = ["l1", "l2", "l3", "d/l4", "d/e/l5"]
COMPONENTS = ["..", "..", ".", "", "l1", "l2", "l3", "l4", "l5", "d", "e", "x"]
ROOT_NAME = "R00T-9c1e"  # no generated name can reach back into the root by name


@attrs.frozen
class Link:
    name: str
    target: str
    hard: bool


@st.composite
def targets(draw: st.DrawFn) -> str:
    # Short targets are the interesting ones ("." or "l1/.." chains), so draw them often.
    size = draw(st.sampled_from([1, 1, 2, 2, 3, 4, 5]))
    parts = draw(st.lists(st.sampled_from(COMPONENTS), min_size=size, max_size=size))
    text = "/".join(parts)
    if draw(st.integers(0, 4)) == 0:
        text = "/" + text
    # An empty target cannot be made (symlink(2) refuses it), so it has no meaning to check.
    assume(text != "")
    return text


@st.composite
def links(draw: st.DrawFn) -> list[Link]:
    names = draw(st.lists(st.sampled_from(LINK_NAMES), unique=True, min_size=1, max_size=len(LINK_NAMES)))
    return [Link(n, draw(targets()), draw(st.integers(0, 4)) == 0) for n in names]


def _may_cycle(members: list[Link]) -> bool:
    """Over-approximation: some link's target names a link that (transitively) names it back."""
    by_base = {posixpath.basename(m.name): m for m in members if not m.hard}
    edges = {m.name: {by_base[c].name for c in m.target.split("/") if c in by_base} for m in members}
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2:
            return False
        state[node] = 1
        if any(visit(nxt) for nxt in edges.get(node, ())):
            return True
        state[node] = 2
        return False

    return any(visit(m.name) for m in members)


def _oracle_escapes(members: list[Link]) -> bool:
    """Whether any link leads outside the root, as the real file system resolves it."""
    with tempfile.TemporaryDirectory(prefix="tar-oracle-") as tmp:
        outer = Path(tmp) / "outer"
        root = outer / ROOT_NAME
        (root / "d" / "e").mkdir(parents=True)
        for m in members:
            if not m.hard:
                os.symlink(m.target, root / m.name)
        real_root = os.path.realpath(root)
        escaped = False
        for m in members:
            start = root if m.hard else (root / m.name).parent
            where = os.path.join(start, m.target)  # an absolute target replaces the start
            try:
                os.stat(where)
            except OSError as exc:
                # The kernel's own limit on links (40): a chain the check refuses as a loop.
                assume(exc.errno != errno.ELOOP)
            real = os.path.realpath(where)
            if os.path.commonpath([real, real_root]) != real_root:
                escaped = True
        return escaped


def _archive(members: list[Link], extra: list[tarfile.TarInfo] = ()) -> bytes:  # type: ignore[assignment]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("d", "d/e"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        data = b"payload"
        for name in ("f", "d/f"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = tarfile.LNKTYPE if m.hard else tarfile.SYMTYPE
            info.linkname = m.target
            tar.addfile(info)
        for info in extra:
            tar.addfile(info, io.BytesIO(b"z" * info.size) if info.size else None)
    return buf.getvalue()


def _open(data: bytes) -> BaseException | None:
    try:
        ArchiveReader(io.BytesIO(data)).close()
    except ArchiveError as exc:
        return exc
    return None


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(links())
# Cases where the text of a link says one thing and the file system another:
# "l1/.." is the root's parent when l1 is the root itself...
@example([Link("l1", ".", hard=False), Link("l2", "l1/..", hard=False)])
@example([Link("d/l4", "..", hard=False), Link("l2", "d/l4/..", hard=False)])
@example([Link("l1", ".", hard=False), Link("l3", "l1/../x", hard=True)])
# ...and inside when l1 is two folders down.
@example([Link("l1", "d/e", hard=False), Link("l2", "l1/../../x", hard=False)])
@example([Link("l1", "l1/..", hard=True)])
def test_links_are_accepted_exactly_when_they_stay_inside(members: list[Link]) -> None:
    assume(not _may_cycle(members))
    escapes = _oracle_escapes(members)
    err = _open(_archive(members))
    if escapes:
        assert isinstance(err, UnsafeArchiveError), f"{members}: {err!r}"
    else:
        assert err is None, f"{members}: refused though every link stays inside: {err}"


NAME_PARTS = ["..", ".", "", "a", "b"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=5), st.booleans())
def test_member_names_with_dotdot_or_a_leading_slash_are_refused(parts: list[str], absolute: bool) -> None:
    name = ("/" if absolute else "") + "/".join(parts)
    info = tarfile.TarInfo(name)
    info.size = 1
    err = _open(_archive([], [info]))
    clean = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        assert isinstance(err, UnsafeArchiveError), f"{name!r}: {err!r}"
    elif not clean:
        assert err is None  # the root itself: ignored
    else:
        assert err is None or "two entries" in str(err), f"{name!r}: {err!r}"


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]),
    st.sampled_from(["n", "d/n", "d/e/n"]),
)
def test_devices_and_fifos_are_refused(kind: bytes, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    assert isinstance(_open(_archive([], [info])), UnsafeArchiveError)


@settings(max_examples=100, deadline=None)
@given(links())
def test_errors_are_always_typed(members: list[Link]) -> None:
    # Loops included: whatever the links, the check ends in no error or an ArchiveError.
    error: BaseException | None = None
    try:
        ArchiveReader(io.BytesIO(_archive(members))).close()
    except Exception as exc:
        error = exc
    assert error is None or isinstance(error, ArchiveError), repr(error)
