"""Registry credentials: arguments, callables, Docker's config file and credential helpers."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from containerd_client._registry._errors import CredentialsError
from containerd_client._registry._reference import (
    DOCKER_HUB_CONFIG_KEY,
    DOCKER_HUB_ENDPOINT,
    registry_endpoint,
)

logger = logging.getLogger(__name__)

# -- credentials ------------------------------------------------------------------


@attrs.frozen
class Credentials:
    """A registry user name and password (or token); neither is shown in its repr."""

    username: str = attrs.field(repr=False)
    password: str = attrs.field(repr=False)


#: ``(user, password)``, :class:`Credentials`, or a callable taking the registry
#: host and returning either (or None for anonymous access).
CredentialsSource: TypeAlias = (
    "tuple[str, str] | Credentials | Callable[[str], tuple[str, str] | Credentials | None] | None"
)


def _as_credentials(value: object) -> Credentials | None:
    if value is None:
        return None
    if isinstance(value, Credentials):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return Credentials(value[0], value[1])
    raise TypeError("credentials must be a (user, password) pair, Credentials or None")


def _config_key_host(key: str) -> str:
    # Docker writes keys as "host", "https://host" or "https://host/v1/".
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0]


def load_docker_config(path: str | None = None) -> dict[str, Credentials]:
    """Read the ``auths`` of Docker's config file.

    Args:
        path: The file; defaults to ``$DOCKER_CONFIG/config.json``, else
            ``~/.docker/config.json``.

    Returns:
        Credentials by registry host. Entries with a base64 ``auth``
        (``user:password``) or ``username``/``password`` fields are read;
        identity tokens are skipped. Credential helpers are not consulted
        here: :func:`docker_credentials` does that. A missing or
        unreadable file gives an empty mapping.
    """
    doc = _read_docker_config(path)
    out: dict[str, Credentials] = {}
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return out
    for key, entry in auths.items():
        if not isinstance(entry, dict) or not isinstance(key, str):
            continue
        host = _config_key_host(key)
        creds = None
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                # Never log the value: it is a password.
                logger.warning("Docker config %s: the auth entry for %s is not valid base64", path, host)
                continue
            user, sep, password = decoded.partition(":")
            if not sep:
                logger.warning("Docker config %s: the auth entry for %s is not user:password", path, host)
                continue
            creds = Credentials(user, password)
        elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            creds = Credentials(entry["username"], entry["password"])
        elif entry.get("identitytoken"):
            logger.debug("Docker config %s: identity token for %s is not supported", path, host)
        if creds is not None:
            out.setdefault(host, creds)
    return out


#: How long a Docker credential helper may take to answer.
CREDENTIAL_HELPER_TIMEOUT = 10.0


def docker_credentials(host: str, path: str | None = None) -> Credentials | None:
    """Credentials for ``host`` as the Docker CLI would find them.

    A credential helper named for the host in ``credHelpers`` comes first,
    then the ``credsStore`` helper, then the ``auths`` entry. A helper is the
    program ``docker-credential-<name>`` on PATH, asked with ``get`` and the
    server on its stdin (the Docker credential-helper protocol). A helper
    that is missing, fails, or knows nothing of the host gives None (logged,
    never with a secret); identity tokens are not supported. Docker Hub
    (``docker.io``) is looked up under the address the Docker CLI keeps it
    under (:data:`~containerd_client._registry.DOCKER_HUB_CONFIG_KEY`).
    """
    hub = registry_endpoint(host) == DOCKER_HUB_ENDPOINT
    server = DOCKER_HUB_CONFIG_KEY if hub else host
    doc = _read_docker_config(path)
    helpers = doc.get("credHelpers")
    helper = helpers.get(host) if isinstance(helpers, dict) else None
    if not isinstance(helper, str) or not helper:
        store = doc.get("credsStore")
        helper = store if isinstance(store, str) and store else None
    if helper:
        creds = _ask_credential_helper(helper, server)
        if creds is not None:
            return creds
    auths = load_docker_config(path)
    if hub:
        return auths.get(_config_key_host(DOCKER_HUB_CONFIG_KEY)) or auths.get(host)
    return auths.get(host)


def _read_docker_config(path: str | None) -> dict[str, Any]:
    """The Docker config document; empty when missing or unreadable (logged)."""
    if path is None:
        folder = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("cannot read Docker config %s: %s", path, type(exc).__name__)
        return {}
    return doc if isinstance(doc, dict) else {}


def _ask_credential_helper(name: str, host: str) -> Credentials | None:
    import shutil
    import subprocess

    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        logger.warning("Docker credential helper %s is not on PATH", program)
        return None
    try:
        proc = subprocess.run(
            [executable, "get"],
            input=host.encode(),
            capture_output=True,
            timeout=CREDENTIAL_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("Docker credential helper %s failed: %s", program, type(exc).__name__)
        return None
    if proc.returncode != 0:
        # "credentials not found" is the protocol's way of saying "none".
        logger.debug("Docker credential helper %s has nothing for %s", program, host)
        return None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        logger.warning("Docker credential helper %s answered something that is not JSON", program)
        return None
    user = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        return None
    if user == "<token>":
        logger.debug("Docker credential helper %s gave an identity token, which is not supported", program)
        return None
    return Credentials(user, secret)


def check_credentials_source(source: object) -> None:
    """Refuse ``auth=`` values that are neither credentials, a callable nor None.

    Raises:
        CredentialsError: It is something else (the value is not shown: it may be a secret).
    """
    if source is None or callable(source):
        return
    try:
        _as_credentials(source)
    except TypeError:
        raise CredentialsError(
            f"auth must be a (user, password) pair of strings, Credentials, a callable or None, "
            f"not {type(source).__name__}"
        ) from None


def _credentials_for(source: CredentialsSource, host: str, docker_config: str | None) -> Credentials | None:
    """The credentials for ``host``.

    Raises:
        CredentialsError: The callable raised (chained), or gave something
            that is not credentials; ``source`` is not a valid source.
    """
    if source is None:
        return docker_credentials(host, docker_config)
    if not callable(source):
        check_credentials_source(source)
        return _as_credentials(source)
    try:
        value = source(host)
    except Exception as exc:
        # The callable's message is not repeated: it may quote a secret.
        raise CredentialsError(
            f"the credentials callable failed for registry {host} ({type(exc).__name__})"
        ) from exc
    try:
        return _as_credentials(value)
    except TypeError:
        raise CredentialsError(
            f"the credentials callable for registry {host} returned {type(value).__name__}, "
            "not a (user, password) pair, Credentials or None"
        ) from None
