"""pyproject.toml's lower bounds are the versions .ci/lowest.sh tests: .ci/lowest.txt pins each package
at the lower bound of its range (torch apart, pinned to the CPU build CI installs)."""
import tomllib

from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

UNPINNED_TEST_TOOLS = {"dashscope", "hydra-submitit-launcher", "psycopg", "psycopg2-binary"}  # cluster services / vocab only


def lower_bound(requirement: Requirement) -> Version:
    (bound,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return Version(bound)


def test_lowest_txt_pins_every_dependency_at_its_lower_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"] + project["optional-dependencies"]["test"]]
    pins = dict(line.split("==") for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines() if line and not line.startswith("#"))
    for requirement in requirements:
        if requirement.name in UNPINNED_TEST_TOOLS:
            continue
        assert requirement.name in pins, f"{requirement.name} has no pin in .ci/lowest.txt"
        if requirement.name == "torch":
            assert Version(pins["torch"]) in requirement.specifier
        else:
            assert Version(pins[requirement.name]) == lower_bound(requirement), requirement.name
    assert set(pins) <= {requirement.name for requirement in requirements}
