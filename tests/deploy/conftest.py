"""Deploy tier: ``ansible/site.yml`` applied to real systemd hosts in podman, checked from
outside as a user would (issue 12). One deployment per test session, shared by every
test of tests/deploy/test_fleet.py (one file, so that pytest-xdist's ``--dist loadfile``
keeps it on one worker): the tests that restart or stop things run last.

Select it with ``-m deploy``. Needs root, podman, runc and (the first time, to build the
host image) debootstrap; scripts/setup.sh --dev installs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.deploy.fleet import (
    AGENTS,
    CENTRAL,
    PUBLISHED,
    Fleet,
    ansible_env,
    make_secrets,
    run_playbook,
    write_inventory,
)
from tests.fixtures.hosts import boot_hosts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: tier 4, Ansible on real systemd hosts in podman (tests/deploy)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """central (broker, replicas a and b, Caddy), agent1 and agent2, deployed once."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh --dev)")
    if os.geteuid() != 0:
        pytest.skip("the deploy tier needs root (podman's rootful store, debootstrap)")
    workdir = tmp_path_factory.mktemp("deploy")
    made = make_secrets()
    with boot_hosts([CENTRAL, *AGENTS], PUBLISHED) as hosts:
        fetch_dir = workdir / "fetched"
        inventory = write_inventory(workdir, hosts, made, fetch_dir)
        env = ansible_env(workdir, hosts[CENTRAL].env)
        first = run_playbook(inventory, env, workdir / "site-1.log")
        if first.returncode != 0:
            pytest.fail(
                f"ansible-playbook site.yml failed (exit {first.returncode}):\n{first.tail()}"
            )
        yield Fleet(hosts, workdir, inventory, env, made, fetch_dir, first)
