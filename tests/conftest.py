"""Shared fixtures: the artefacts the tests build (the tiny model, the Qwen2.5 tokenizer, the tokenized demo
data) live in one cache dir that outlives the pytest session, so each is built once and later sessions reuse it.

The dir is `$LORASWEEP_TEST_CACHE`, by default `.cache/tests` in the repository (CI may keep it between runs or
not). Everything in it is keyed by version: `models/<TINY_MODEL_NAME>` and `tokenizers/<QWEN25_CACHE_NAME>` carry
their recipe's version in the name, and `tokenized/<key>` hashes the data, the tokenizer, the template, the
cutoff and the encoding rules' PREPROCESS_VERSION. Bumping a version builds afresh; delete the dir to reclaim space.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from runs.project import register_project_dir

ROOT = Path(__file__).resolve().parents[1]


def compose_train(overrides):
    """conf/train.yaml with overrides, composed as train.py composes it (the project_dir resolver registered)."""
    register_project_dir()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def recipe_env(tmp_path, cache_dir, monkeypatch):
    """For a run of the recipe in this process (sft.recipe.train.run_training): the shared cache, outputs under tmp_path."""
    monkeypatch.setenv("LORASWEEP_CACHE", str(cache_dir))
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))


def shared_cache_dir() -> Path:
    directory = Path(os.environ.get("LORASWEEP_TEST_CACHE") or ROOT / ".cache" / "tests").expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return shared_cache_dir()


def pytest_sessionstart(session):
    """The first session builds the tiny model and Qwen2.5's tokenizer, a minute or more on a busy CPU, inside
    fixtures whose output pytest captures (and pytest-xdist's workers print nothing at all): a silent console
    that looks like a hang. So the main process builds what is missing here, before any worker starts, and
    says what it builds, a line each. Later sessions find both built and print nothing."""
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the main process built them
        return
    from sft.model.qwen_vocab import ensure_qwen2_tokenizer, qwen2_tokenizer_dir
    from sft.model.tiny_model import ensure_tiny_model, tiny_model_dir

    directory = shared_cache_dir()
    artefacts = [("the tiny model", tiny_model_dir, ensure_tiny_model)]
    if importlib.util.find_spec("dashscope"):  # without it the tests that need the tokenizer say what to install
        artefacts.append(("Qwen2.5's tokenizer from dashscope's qwen.tiktoken", qwen2_tokenizer_dir, ensure_qwen2_tokenizer))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    for what, where, ensure in artefacts:
        if where(directory).is_dir():
            continue
        say(f"building {what} once, into {where(directory)} (later test sessions reuse it)")
        started = time.perf_counter()
        ensure(directory)
        say(f"built {what} in {time.perf_counter() - started:.0f} s")


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    from transformers import AutoTokenizer

    from sft.model.qwen_vocab import ensure_qwen2_tokenizer

    return AutoTokenizer.from_pretrained(ensure_qwen2_tokenizer(cache_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(cache_dir):
    from sft.model.tiny_model import ensure_tiny_model

    return ensure_tiny_model(cache_dir)


def run_train(args, project_root, cache_dir, check=True, timeout=600, extra_env=None):
    """`python train.py ARGS` in a subprocess, with outputs under project_root and a shared cache."""
    env = {**os.environ, "PROJECT_ROOT": str(project_root), "LORASWEEP_CACHE": str(cache_dir),
           "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", **(extra_env or {})}
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


SIGNAL_WHILE_IMPORTING = """\
import os, signal, sys


class SignalWhileImporting:
    \"\"\"Sends this process {signal_name} as {module} starts to import, in the first process to import it.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and not os.path.exists({mark!r}):
            open({mark!r}, "w").close()
            os.kill(os.getpid(), signal.{signal_name})
        return None


sys.meta_path.insert(0, SignalWhileImporting())
"""


def signal_while_importing(directory: Path, module: str, signal_name: str) -> Path:
    """A sitecustomize.py in `directory` (put it on PYTHONPATH) that sends a real signal at a fixed moment:
    once, in the first Python process that imports `module`, as that import starts."""
    directory.mkdir(parents=True, exist_ok=True)
    hook = SIGNAL_WHILE_IMPORTING.format(module=module, signal_name=signal_name, mark=str(directory / "sent"))
    (directory / "sitecustomize.py").write_text(hook)
    return directory


def _service_absent(reason: str) -> None:
    """Skip where a cluster service is absent (a laptop); in CI (CI=true) .ci/services.sh started them,
    so an absent one is a failure, never a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: .ci/services.sh should have started it", pytrace=False)
    pytest.skip(f"{reason} (start one with `bash .ci/services.sh` as root on Debian 12)")


@pytest.fixture(scope="session")
def slurm():
    """A SLURM cluster with accounting that this machine submits to (its jobs run here, or see its disk)."""
    if shutil.which("sbatch") is None:
        _service_absent("no SLURM here (sbatch not found)")
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60)
    if states.returncode != 0 or not set(states.stdout.split()) & {"idle", "mix", "alloc"}:
        _service_absent(f"no SLURM node up (sinfo: {(states.stdout + states.stderr).strip() or 'no nodes'})")
    accounting = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=60)
    if accounting.returncode != 0:
        _service_absent(f"SLURM has no accounting (sacct: {accounting.stderr.strip()})")


@pytest.fixture(scope="session")
def postgres_url():
    """LORASWEEP_TEST_PG_URL: a PostgreSQL database the tests may fill (password from PGPASSFILE)."""
    url = os.environ.get("LORASWEEP_TEST_PG_URL")
    if not url:
        _service_absent("no PostgreSQL server (LORASWEEP_TEST_PG_URL is not set)")
    return url


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """The cluster tests share one small SLURM cluster: under pytest-xdist they all run on one worker,
    one after the other, as they would without it."""
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.xdist_group("cluster"))


def pytest_terminal_summary(terminalreporter):
    """How many cluster tests ran, so that a CI log shows they ran rather than skipped."""
    outcomes: dict[str, set[str]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if hasattr(report, "outcome") and "cluster" in getattr(report, "keywords", {}):
                outcomes.setdefault(report.nodeid, set()).add(report.outcome)
    if outcomes:
        failed = sum("failed" in seen for seen in outcomes.values())
        skipped = sum("skipped" in seen and "failed" not in seen for seen in outcomes.values())
        ran = len(outcomes) - skipped
        terminalreporter.write_line(f"cluster tests: {ran} ran ({ran - failed} passed, {failed} failed), {skipped} skipped")
