"""The public names: top-level exports, one command convention, one exit-code name."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

import containerd_client
from containerd_client import Client, errors
from containerd_client._convert import label_update
from containerd_client._retry import NO_RETRY
from containerd_client.content import Descriptor
from containerd_client.images import Image, ImageStore
from containerd_client.spec import command_args
from containerd_client.tasks import ExitStatus

NOWHERE = "/nonexistent/containerd-client-test.sock"


@pytest.mark.parametrize("name", containerd_client.__all__)
def test_every_exported_name_imports(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from containerd_client import {name}", namespace)
    assert namespace[name] is getattr(containerd_client, name)
    if name in containerd_client._LAZY:
        # The lazy loader hands out the defining module's own object.
        assert namespace[name] is getattr(importlib.import_module(containerd_client._LAZY[name]), name)


@pytest.mark.parametrize(
    "name",
    [
        "Image",
        "ImageStore",
        "ContentStore",
        "SnapshotStore",
        "Descriptor",
        "Platform",
        "Mount",
        "Subscription",
        "UnclosedClientWarning",  # for a filterwarnings in a notebook or a pytest ini
    ],
)
def test_the_stores_and_values_a_script_needs_are_exported(name: str) -> None:
    assert name in containerd_client.__all__


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("echo hi", ["echo", "hi"]),
        ("sh -c 'echo \"$0\" b'  'a  1'", ["sh", "-c", 'echo "$0" b', "a  1"]),
        ("  true  ", ["true"]),
        (["echo", "a b"], ["echo", "a b"]),
        (("ls", "-l"), ["ls", "-l"]),
    ],
)
def test_a_string_command_is_split_like_a_shell_a_list_is_kept(command: Any, argv: list[str]) -> None:
    assert command_args(command) == argv


@pytest.mark.parametrize("command", ["", "   ", "echo 'open", "a\x00b", 12345, b"echo hi"])
def test_a_bad_command_is_a_typed_error(command: Any) -> None:
    with pytest.raises(errors.InvalidSpecError):
        command_args(command)


def test_run_passes_a_string_command_split(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def create_container(self: Client, container_id: str, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    image = Image(
        "example.test/img:1", Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:0", 1)
    )
    monkeypatch.setattr(ImageStore, "get", lambda self, name: image)
    monkeypatch.setattr(Client, "create_container", create_container)
    with Client(NOWHERE, "ns", retry=NO_RETRY, timeout=1) as client:
        with pytest.raises(Stop):
            client.run("example.test/img:1", "sh -c 'echo hi'")
        assert seen["args"] == ["sh", "-c", "echo hi"]
        # An unbalanced quote is refused before the image is even looked up.
        monkeypatch.setattr(ImageStore, "get", lambda self, name: pytest.fail("looked up"))
        with pytest.raises(errors.InvalidSpecError, match="cannot be split"):
            client.run("example.test/img:1", "echo 'hi")


def test_exit_status_code_is_a_deprecated_alias_of_exit_code() -> None:
    status = ExitStatus(3)
    assert status.exit_code == 3
    with pytest.deprecated_call():
        assert status.code == 3


@pytest.mark.parametrize("labels", [{"": "x"}, {"k": 1}, {2: "x"}])
def test_label_update_refuses_bad_labels(labels: Any) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        label_update(labels)


def test_label_update_sends_values_and_masks_every_key() -> None:
    values, mask = label_update({"keep": "1", "containerd.io/gc.ref.content.l": "sha256:0", "gone": ""})
    assert values == {"keep": "1", "containerd.io/gc.ref.content.l": "sha256:0"}
    assert list(mask.paths) == ["labels.keep", "labels.containerd.io/gc.ref.content.l", "labels.gone"]
