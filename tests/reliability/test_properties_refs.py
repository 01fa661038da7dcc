"""Property tests of image reference parsing (hypothesis).

The grammar is distribution's ``reference`` package, written out again here
independently of the parser (ASCII only, as in Go's regexp ``\\w``):

* valid references built from the grammar parse, and their parts are the
  parts they were built from;
* ``parse(str(ref)) == ref`` for every parsed reference;
* any text either parses to parts that satisfy the grammar, or raises
  :class:`InvalidReferenceError`; never another exception.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from containerd_client._registry import InvalidReferenceError, Reference, parse_reference

DEFAULT_HOST = "127.0.0.1:5000"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
alnums = st.text(_LOWER, min_size=1, max_size=8)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def components(draw: st.DrawFn) -> str:
    parts = [draw(alnums)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(separators), draw(alnums)]
    return "".join(parts)


@st.composite
def labels(draw: st.DrawFn) -> str:
    first = draw(st.text(_LETTERS, min_size=1, max_size=8))
    if draw(st.booleans()):
        return first + "-" * draw(st.integers(1, 2)) + draw(st.text(_LETTERS, min_size=1, max_size=8))
    return first


paths = st.lists(components(), min_size=1, max_size=4).map("/".join)
ports = st.integers(0, 65535).map(lambda p: f":{p}")
hosts = st.one_of(
    # A first component is a host only with a dot, a port, uppercase, or "localhost".
    st.builds(lambda a, b, p: f"{a}.{b}{p}", labels(), labels(), st.one_of(st.just(""), ports)),
    st.builds(lambda a, p: f"{a}{p}", labels(), ports),
    st.builds(lambda p: f"localhost{p}", st.one_of(st.just(""), ports)),
    st.builds(lambda p: f"[::1]{p}", ports),
)
tags = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_LETTERS + "_"),
    st.one_of(st.text(_LETTERS + "_.-", max_size=12), st.just("a" * 127)),
)
digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
    st.binary(min_size=64, max_size=64).map(lambda b: "sha512:" + b.hex()),
)


@st.composite
def valid_references(draw: st.DrawFn) -> tuple[str, str, str, str | None, str | None]:
    host = draw(hosts)
    path = draw(paths.filter(lambda p: len(host) + 1 + len(p) <= 255))
    tag = draw(st.one_of(st.none(), tags))
    digest = draw(st.one_of(st.none(), digests))
    text = f"{host}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return text, host, path, tag, digest


def assert_grammatical(ref: Reference) -> None:
    assert HOST.fullmatch(ref.host), ref
    assert PATH.fullmatch(ref.repository), ref
    assert len(ref.host) + 1 + len(ref.repository) <= 255, ref
    assert ref.tag is None or TAG.fullmatch(ref.tag), ref
    assert ref.digest is None or DIGEST.fullmatch(ref.digest), ref
    assert ref.tag is not None or ref.digest is not None, ref


@SETTINGS
@given(valid_references())
def test_valid_references_parse_to_their_parts(case: tuple[str, str, str, str | None, str | None]) -> None:
    text, host, path, tag, digest = case
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.digest) == (host, path, digest)
    assert ref.tag == (tag if tag or digest else "latest")
    assert_grammatical(ref)
    assert parse_reference(str(ref)) == ref


def _mutate(text: str, data: st.DataObject) -> str:
    pos = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(st.sampled_from("/:@.-_A é\x00[]%#~+\n"), min_size=1, max_size=3))
    how = data.draw(st.sampled_from(["insert", "replace", "cut"]))
    if how == "insert":
        return text[:pos] + junk + text[pos:]
    if how == "replace":
        return text[:pos] + junk + text[pos + len(junk) :]
    return text[:pos]


@SETTINGS
@given(st.one_of(st.text(max_size=80), st.text(st.characters(max_codepoint=127), max_size=80)))
def test_junk_parses_grammatically_or_raises_the_typed_error(text: str) -> None:
    try:
        ref = parse_reference(text, default_host=DEFAULT_HOST)
    except InvalidReferenceError:
        return
    assert_grammatical(ref)
    assert parse_reference(str(ref)) == ref


@SETTINGS
@given(valid_references(), st.data())
def test_mutated_references_parse_grammatically_or_raise_the_typed_error(
    case: tuple[str, str, str, str | None, str | None], data: st.DataObject
) -> None:
    text = _mutate(case[0], data)
    try:
        ref = parse_reference(text, default_host=DEFAULT_HOST)
    except InvalidReferenceError:
        return
    assert_grammatical(ref)
    assert parse_reference(str(ref)) == ref


@SETTINGS
@given(st.text(min_size=1, max_size=10), st.sampled_from(["", "@sha256:" + "0" * 64]))
def test_tags_are_ascii_words(tag: str, digest: str) -> None:
    # Go's \w is ASCII: "é" or "²" is no tag character.
    try:
        ref = parse_reference(f"{DEFAULT_HOST}/team/app:{tag}{digest}")
    except InvalidReferenceError:
        return
    assert_grammatical(ref)


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_non_strings_raise_the_typed_error(value: object) -> None:
    try:
        parse_reference(value)  # type: ignore[arg-type]
    except InvalidReferenceError:
        return
    raise AssertionError(f"{value!r} was accepted")
