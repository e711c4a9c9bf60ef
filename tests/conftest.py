"""Shared fixtures: the core-implementation axis and the real-server rig."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis budgets: "dev" explores, "ci" is smaller and derandomised.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Network safety: SDKs must never probe the cloud metadata address.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.pop("AWS_CA_BUNDLE", None)
# The developer's own AWS SDK settings would move endpoints or switch the fast read
# path off (storage/awsconfig.py): tests that want them set their own.
for _var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
             "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_DEFAULTS_MODE",
             "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
    os.environ.pop(_var, None)
_no_file = os.path.join(os.path.dirname(__file__), ".no-such-aws-file")
os.environ["AWS_CONFIG_FILE"] = _no_file
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = _no_file

pytest_plugins = ["tests.rig.fixtures", "tests.rig.report", "tests.dbapi_support"]


@pytest.fixture(scope="session", autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory):
    """Write buffers default to the per-user state directory: tests (and the processes
    they start) use a private one, never the real ~/.local/state."""
    path = tmp_path_factory.mktemp("state-home")
    path.chmod(0o700)
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = saved


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-compiled", action="store_true",
        help="skip the compiled-twin parameter (only for machines without a compiler)",
    )


@dataclass(frozen=True)
class Impl:
    name: str  # "cython" or "python"
    module_name: str

    @property
    def module(self) -> ModuleType:
        # Import the twin explicitly: a missing build must fail, not fall back.
        return importlib.import_module(self.module_name)


IMPLS = [
    pytest.param(Impl("cython", "litevfs._pagecache"), id="cython", marks=pytest.mark.compiled),
    pytest.param(Impl("python", "litevfs._pagecache_py"), id="python"),
]


@pytest.fixture(scope="session", params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param.name == "cython" and request.config.getoption("--no-compiled"):
        pytest.skip("--no-compiled")
    return request.param


@pytest.fixture
def core(impl: Impl) -> ModuleType:
    """The core module (compiled or pure) under test."""
    return impl.module


@pytest.fixture(scope="module")
def twins(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(compiled, pure) core modules, for tests that compare the two side by side."""
    if request.config.getoption("--no-compiled"):
        pytest.skip("--no-compiled")
    from litevfs import _pagecache, _pagecache_py  # the compiled import must not fall back

    return _pagecache, _pagecache_py
