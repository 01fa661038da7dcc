"""Property tests: identifier validation and spec building (hypothesis).

Identifiers: ``validate_id`` accepts exactly containerd's grammar
(``pkg/identifiers``: 1 to 76 characters matching
``^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$``), checked against an oracle
written without regular expressions; what it accepts is a safe path component.

Spec building: any combination of options, with good or hostile values,
either builds a spec that keeps the invariants runc relies on, or raises
``InvalidSpecError``; never a builtin exception.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from containerd_client import errors, spec
from containerd_client._ids import MAX_ID_LENGTH, validate_id
from containerd_client.containers import _state_root

# Small and fast: the whole file runs in a few seconds; no example database on disk.
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

ALNUM = string.ascii_letters + string.digits
SEPARATORS = "._-"


def oracle(value: str) -> bool:
    """containerd's identifier rule, restated as a scan (no regex)."""
    if not 1 <= len(value) <= 76:
        return False
    previous_was_separator = True  # the first character may not be a separator
    for ch in value:
        if ch in ALNUM:
            previous_was_separator = False
        elif ch in SEPARATORS and not previous_was_separator:
            previous_was_separator = True
        else:
            return False
    return not previous_was_separator


# Mostly the identifier alphabet, plus the characters that make trouble.
near_ids = st.text(alphabet=ALNUM + SEPARATORS + "/\\ \n\t\x00é٣ﬁ:@", max_size=90)
# Built from the grammar: alphanumeric runs joined by single separators.
grammar_ids = st.lists(
    st.tuples(st.sampled_from(SEPARATORS), st.text(alphabet=ALNUM, min_size=1, max_size=12)), max_size=8
).flatmap(
    lambda rest: st.text(alphabet=ALNUM, min_size=1, max_size=12).map(
        lambda head: head + "".join(sep + run for sep, run in rest)
    )
)


def test_max_length_is_containerds() -> None:
    assert MAX_ID_LENGTH == 76


@FAST
@given(st.one_of(near_ids, st.text(max_size=100)))
def test_validate_id_accepts_exactly_the_grammar(value: str) -> None:
    if oracle(value):
        assert validate_id(value) == value
    else:
        with pytest.raises(errors.InvalidIdError):
            validate_id(value)


@FAST
@given(grammar_ids)
def test_grammar_ids_are_accepted_up_to_76_characters(value: str) -> None:
    if len(value) <= MAX_ID_LENGTH:
        assert validate_id(value) == value
    else:
        with pytest.raises(errors.InvalidIdError):
            validate_id(value)


@FAST
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.lists(st.text(max_size=3), max_size=2)))
def test_non_strings_are_refused_with_a_typed_error(value: object) -> None:
    with pytest.raises(errors.InvalidIdError):
        validate_id(value)


@FAST
@given(grammar_ids.filter(lambda v: len(v) <= MAX_ID_LENGTH), grammar_ids.filter(lambda v: len(v) <= 76))
def test_accepted_ids_are_safe_path_components(namespace: str, container_id: str) -> None:
    assert container_id not in (".", "..")
    assert os.path.basename(container_id) == container_id
    root = _state_root("/state")
    bundle = os.path.normpath(os.path.join(root, namespace, container_id))
    assert os.path.dirname(os.path.dirname(bundle)) == root


# -- spec building ----------------------------------------------------------------------------

KNOWN_CAPS = list(spec._CAPABILITY_NAMES)
texts = st.text(max_size=12)
paths = st.one_of(texts, texts.map(lambda t: "/" + t))
numbers = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 1, -1, 2, 999, 1000, 262_144, 262_145, 1_000_000, 1_000_001, 2**32 - 2, 2**32]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    texts,
)
env_values = st.one_of(
    st.dictionaries(texts, st.one_of(texts, st.integers(), st.none()), max_size=3),
    st.lists(texts, max_size=3),
    st.lists(st.sampled_from(["A=1", "B=", "=x", "NOEQ", "P=a=b"]), max_size=3),
)
cap_names = st.one_of(
    st.sampled_from(KNOWN_CAPS),
    st.sampled_from(KNOWN_CAPS).map(lambda c: "CAP_" + c.lower()),
    st.sampled_from(["ALL", "all", "BOGUS", "CAP_", ""]),
    texts,
)


def _kwargs(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


OPTIONS: dict[str, tuple[Callable[..., spec.SpecOpt], st.SearchStrategy[Any]]] = {
    "env": (spec.with_env, env_values.map(lambda v: ((v,), {}))),
    "args": (
        spec.with_process_args,
        st.lists(st.one_of(texts, numbers), max_size=3).map(lambda v: ((v,), {})),
    ),
    "cwd": (spec.with_cwd, paths.map(lambda v: ((v,), {}))),
    "hostname": (spec.with_hostname, texts.map(lambda v: ((v,), {}))),
    "user": (
        spec.with_user,
        st.tuples(numbers, numbers, st.lists(numbers, max_size=2)).map(lambda v: (v, {})),
    ),
    "memory": (
        spec.with_memory_limit,
        st.tuples(numbers, _kwargs(swap=numbers)).map(lambda v: ((v[0],), v[1])),
    ),
    "cpu": (
        spec.with_cpu,
        _kwargs(shares=numbers, quota=numbers, period=numbers, cpus=numbers).map(lambda v: ((), v)),
    ),
    "pids": (spec.with_pids_limit, numbers.map(lambda v: ((v,), {}))),
    "caps": (
        spec.with_capabilities,
        _kwargs(add=st.lists(cap_names, max_size=3), drop=st.lists(cap_names, max_size=3)).map(
            lambda v: ((), v)
        ),
    ),
    "tmpfs": (
        spec.with_tmpfs,
        st.tuples(paths, _kwargs(size=numbers, mode=numbers)).map(lambda v: ((v[0],), v[1])),
    ),
    "bind": (
        spec.with_bind_mount,
        st.tuples(paths, paths, _kwargs(readonly=st.one_of(st.booleans(), texts))).map(
            lambda v: ((v[0], v[1]), v[2])
        ),
    ),
    "annotations": (
        spec.with_annotations,
        st.dictionaries(texts, st.one_of(texts, st.integers()), max_size=3).map(lambda v: ((v,), {})),
    ),
    "tty": (spec.with_tty, st.one_of(st.booleans(), texts).map(lambda v: ((v,), {}))),
    "rootfs": (spec.with_rootfs, paths.map(lambda v: ((v,), {}))),
}

option_calls = st.sampled_from(sorted(OPTIONS)).flatmap(
    lambda name: OPTIONS[name][1].map(lambda call: (name, call[0], call[1]))
)


def _check_invariants(doc: dict[str, Any]) -> None:
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, as runc reads it
    process = doc["process"]
    assert all(isinstance(a, str) and "\x00" not in a for a in process["args"])
    keys = [e.split("=", 1)[0] for e in process["env"]]
    assert all("=" in e and "\x00" not in e for e in process["env"])
    assert all(keys)
    assert len(keys) == len(set(keys))  # with_env replaces, it does not duplicate
    assert process["cwd"].startswith("/")
    for key in ("uid", "gid"):
        assert 0 <= process["user"][key] <= 2**32 - 2
    for kind, caps in process["capabilities"].items():
        assert len(caps) == len(set(caps)), kind
        assert all(c.startswith("CAP_") and c[4:] in KNOWN_CAPS for c in caps), kind
    resources = doc["linux"]["resources"]
    memory = resources.get("memory")
    if memory:
        assert memory["limit"] > 0
        assert memory["swap"] == -1 or memory["swap"] >= memory["limit"]
    cpu = resources.get("cpu", {})
    if "quota" in cpu:
        assert cpu["quota"] >= 1000
    if "period" in cpu:
        assert 1000 <= cpu["period"] <= 1_000_000
    if "shares" in cpu:
        assert 2 <= cpu["shares"] <= 262_144
    if "pids" in resources:
        assert resources["pids"]["limit"] >= 1 or resources["pids"]["limit"] == -1
    for mount in doc["mounts"]:
        assert mount["destination"].startswith("/")
        assert all(isinstance(o, str) for o in mount["options"])
        sizes = [o[5:] for o in mount["options"] if o.startswith("size=")]
        assert all(re.fullmatch(r"[0-9]+k?", size) for size in sizes)  # never negative
    if "hostname" in doc:
        assert 1 <= len(doc["hostname"]) <= 64
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in doc.get("annotations", {}).items())
    assert isinstance(process.get("terminal", False), bool)
    assert doc["root"]["path"].startswith("/") or doc["root"]["path"] == "rootfs"
    # What the options never touch stays as containerd's default.
    assert doc["linux"]["cgroupsPath"] == "/ns/c1"
    assert {n["type"] for n in doc["linux"]["namespaces"]} >= {"pid", "mount"}


@FAST
@given(st.lists(option_calls, max_size=6))
def test_any_option_combination_builds_a_valid_spec_or_raises_typed(calls: list[Any]) -> None:
    opts = []
    try:
        for name, args, kwargs in calls:
            opts.append(OPTIONS[name][0](*args, **kwargs))
        doc = spec.generate("c1", "ns", *opts)
    except errors.InvalidSpecError:
        return  # typed; any other exception fails the test
    _check_invariants(doc)


@FAST
@given(st.lists(option_calls, max_size=4))
def test_generate_never_changes_its_base(calls: list[Any]) -> None:
    try:
        opts = [OPTIONS[name][0](*args, **kwargs) for name, args, kwargs in calls]
    except errors.InvalidSpecError:
        return
    base = spec.generate("c1", "ns")
    frozen = copy.deepcopy(base)
    first = spec.generate("c1", "ns", *opts, base=base)
    assert base == frozen
    # Options are reusable values: applying them again from the same base gives the same spec.
    assert spec.generate("c1", "ns", *opts, base=base) == first


@FAST
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        texts,
        st.none(),
    )
)
# Found by this test: a huge negative float overflowed int(), a huge int lost
# precision through float. Kept so they run every time.
@example(cpus=-1.797693134862316e303)
@example(cpus=2_882_303_761_519)
def test_cpus_value_gives_a_bounded_quota_or_a_typed_error(cpus: Any) -> None:
    try:
        doc = spec.generate("c1", "ns", spec.with_cpu(cpus=cpus))
    except errors.InvalidSpecError:
        assert isinstance(cpus, (bool, str)) or not math.isfinite(cpus) or not 1000 <= cpus * 100_000 < 2**63
        return
    cpu = doc["linux"]["resources"]["cpu"]
    if cpus is None:
        assert "quota" not in cpu
    else:
        assert cpu["period"] == 100_000
        assert cpu["quota"] == int(cpus * 100_000) >= 1000
