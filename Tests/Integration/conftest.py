"""Fixtures for the integration tests. See harness.py for the world and the daemon.

Run as root:  /usr/bin/python3 -m pytest -v Tests/Integration
Environment:  INTERLOCK_BIN_DIR (default <repo>/.build/debug), CI=true (skips become failures),
              INTERLOCK_KEEP=1 (keep the work directory under /tmp for inspection).
"""

import os
import shutil

import pytest

import harness
from harness import IN_CI, Daemon, require

_skipped: list[str] = []
_daemons_key = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def world():
    require(os.geteuid() == 0, "integration tests need root (namespaces, nftables, setpriv)")
    missing = [t for t in ("ip", "nsenter", "setpriv", "nft", "psql", "curl", "runuser", "useradd")
               if shutil.which(t) is None]
    missing += [p for p in ("/usr/lib/postgresql/15/bin/initdb", "/usr/lib/postgresql/15/bin/pg_ctl",
                            harness.PYTHON) if not os.path.exists(p)]
    require(not missing, f"missing tools: {', '.join(missing)}")
    require(harness.cgroup2_mount() is not None, "no cgroup2 mount")
    w = harness.start_world()
    try:
        yield w
    finally:
        harness.stop_world(w, keep=os.environ.get("INTERLOCK_KEEP") == "1")


def _binaries_present():
    for name in ("interlockd", "interlock"):
        require(harness.bin_path(name).exists(),
                f"{harness.SOURCE_BIN_DIR / name} not built (swift build, or set INTERLOCK_BIN_DIR)")


@pytest.fixture
def make_daemon(world, request):
    """Factory: make_daemon(capture={...}, start=True) → a Daemon in its own directory.
    Every daemon made here is stopped at the end of the test and the nft table removed."""
    _binaries_present()
    made: list[Daemon] = []
    request.node.stash[_daemons_key] = made

    def make(start: bool = True, directory=None, env=None, **config) -> Daemon:
        d = Daemon(world, directory)
        made.append(d)
        if directory is None or not d.config.exists():
            d.write_config(**config)
        if start:
            d.start(env=env)
        return d

    yield make
    for d in made:
        d.cleanup()
    # The host namespace must be clean for the next test.
    left = world.nft("list", "table", "inet", "interlock")
    assert left.returncode != 0, "table inet interlock still installed after the test's cleanup"


@pytest.fixture
def daemon(make_daemon):
    """interlockd with the default policy (svc-ci and group bots captured, unregistered: deny)."""
    return make_daemon()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, d in enumerate(item.stash.get(_daemons_key, [])):
            report.sections.append((f"interlockd #{i} stderr ({d.stderr_path})", d.stderr(150)))


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In CI an integration test that did not run is a failure (DESIGN.md, testing model).
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} integration test(s) skipped, which counts as failure:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1
