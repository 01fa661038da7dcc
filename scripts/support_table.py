#!/usr/bin/env python3
"""Turn the integration runs of scripts/test into the README's support table.

Usage::

    python scripts/support_table.py LABEL=REPORT.xml [LABEL=REPORT.xml ...] [--write README.md]

Each report is a JUnit XML file of one integration run (one containerd
version). A feature "works" on a version when all of its tests ran there and
passed; "n/a" when its tests were skipped there (they run on another
version); "fails" otherwise. With ``--write`` the table replaces the block
between the support-table markers in the README.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Feature → (test file, name regex) pairs that prove it.
FEATURES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Client, namespaces, leases, typed errors", [("test_foundation", ".")]),
    ("Containers, tasks, execs, stdio, TTY, restore", [("test_tasks", ".")]),
    ("Events: ordered dispatch, OOM, exec cleanup", [("test_events", "^(?!test_survives)")]),
    ("Events across a containerd SIGKILL + restart", [("test_events", "test_survives")]),
    ("Content, snapshots, image import/export/unpack", [("test_images", ".")]),
    ("client.run, containers from images, named users", [("test_run", ".")]),
    (
        "Pull, client side (OCI distribution)",
        [("test_pull", "test_client_path|test_1_7_plain|test_malformed|test_default")],
    ),
    ("Pull through the daemon (transfer service)", [("test_pull", "test_transfer_path|test_1_7_transfer")]),
    ("Private test daemon (testing module)", [("test_testing_daemon", ".")]),
    ("README tour", [("test_readme", ".")]),
    ("Exits: wait across a restart, OOM flag, exit/delete races", [("test_exit_trust", ".")]),
    ("Cleanup removes only the SDK's own folders", [("test_cleanup_safety", ".")]),
    ("Faults: daemon SIGKILL at each step, shim kill, client kill", [("test_faults", ".")]),
    ("Load and soak: 32 threads, lifecycles without leaks", [("test_load_soak", ".")]),
    (
        "Hostile input: ids, specs, archives, registries",
        [("test_hostile_inputs", "."), ("test_hostile_archives", "."), ("test_hostile_registry", ".")],
    ),
    (
        "Property tests: ids, references, specs, tar safety",
        [("test_properties_ids_spec", "."), ("test_properties_refs", "."), ("test_properties_tar", ".")],
    ),
    ("Networking: CNI bridge, published ports, port proxy, namespace pool", [("test_network", ".")]),
    ("Logs, wait strategies, graceful stop", [("test_logs", "."), ("test_wait", "."), ("test_stop", ".")]),
    ("Copy in and out, symlink-safe", [("test_copy", "."), ("test_hostile_copy", ".")]),
    (
        "Crash-safe cleanup: sweep, SIGTERM, watchdog",
        [("test_sweep_sessions", "."), ("test_crash_teardown", ".")],
    ),
    ("pytest fixtures: services, recipes, xdist", [("test_service_fixtures", "."), ("test_recipes", ".")]),
    ("Teardown off the critical path", [("test_background_teardown", ".")]),
    ("Checkpoint and restore (CRIU), warm services", [("test_checkpoint", ".")]),
    ("Command line (every command, end to end)", [("test_cli", ".")]),
    (
        "Notebooks: executed notebook, HTML reprs, owner warnings",
        [("test_notebook", "."), ("test_owner_lifecycle", ".")],
    ),
    ("Remote daemons over ssh://", [("test_ssh", "."), ("test_remote_doc", ".")]),
]

BEGIN = "<!-- support-table:begin -->"
END = "<!-- support-table:end -->"


def _cases(path: str) -> list[tuple[str, str, str]]:
    """(file, test name, outcome) for every test case in a JUnit report."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        out.append((module, name, outcome))
    return out


def table(reports: list[tuple[str, str]]) -> str:
    """The markdown table for ``(label, report path)`` pairs."""
    runs = [(label, _cases(path)) for label, path in reports]
    lines = ["| feature | " + " | ".join(label for label, _ in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for feature, selectors in FEATURES:
        cells = []
        for _label, cases in runs:
            picked = [
                outcome
                for module, name, outcome in cases
                for sel_module, pattern in selectors
                if module == sel_module and re.search(pattern, name)
            ]
            ran = [o for o in picked if o != "skipped"]
            if not picked:
                cells.append("not run")
            elif not ran:
                cells.append("n/a")
            elif all(o == "passed" for o in ran):
                cells.append(f"works ({len(ran)})")
            else:
                cells.append(f"fails ({ran.count('failed')}/{len(ran)})")
        lines.append(f"| {feature} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="LABEL=path/to/report.xml")
    parser.add_argument("--write", metavar="README", help="replace the table block in this file")
    ns = parser.parse_args()
    reports = [tuple(r.split("=", 1)) for r in ns.reports]
    text = table([(label, path) for label, path in reports])
    if ns.write:
        readme = Path(ns.write)
        content = readme.read_text()
        if BEGIN not in content or END not in content:
            print(f"support_table: no {BEGIN} block in {readme}", file=sys.stderr)
            return 1
        head, rest = content.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
