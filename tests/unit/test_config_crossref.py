"""`config check` verifies cross-references (config/crossref.py).

Aspects: a workload region that is no carbon region (`GBB`) with "did you mean"; SAMPLE DATA
regions accepted (the ones `run` uses); extender aliases, default region and ranked regions
must be carbon regions; two workloads on one target; every problem at once, exit 2, the layer
named (a file's line and column, paths as the loader writes them); a configuration whose
references resolve passes; `run` refuses to start on them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from config.cli import cli

WORKLOAD = """
    - name: {name}
      namespace: {namespace}
      target: {{name: {target}}}
      load: {{trace: "sample:web"}}
      capacity_per_replica: 20
      region: {region}
"""


def _workload(name: str, region: str, *, target: str | None = None, namespace: str = "a") -> str:
    return WORKLOAD.format(name=name, region=region, target=target or name, namespace=namespace)


def _check(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "gridshift.yaml"
    path.write_text(text)
    command = list(args) or ["config", "check"]
    result = CliRunner().invoke(cli, [*command, "--config", str(path)])
    return result.exit_code, result.output


def test_resolving_references_pass(tmp_path: Path) -> None:
    text = "scaler:\n  workloads:" + _workload("web", "GB") + _workload("batch", "sample-wind")
    text += "extender:\n  default_region: FR\n"
    code, out = _check(tmp_path, text)
    assert code == 0, out
    assert out.startswith("configuration OK")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param(
            "scaler:\n  workloads:" + _workload("web", "GBB"),
            "scaler.workloads[0].region: unknown region 'GBB' (did you mean 'GB'?)",
            id="workload region typo",
        ),
        pytest.param(
            "extender:\n  region_aliases: {eu-west-2: gb-londn}\n",
            "extender.region_aliases: unknown key: region aliases moved to the one region "
            "model: list each cloud region/zone under carbon.regions.<REGION>.aliases",
            id="old alias setting says where aliases went",
        ),
        pytest.param(
            "extender:\n  default_region: DEE\n",
            "extender.default_region: unknown region 'DEE' (did you mean 'DE'?)",
            id="default region",
        ),
        pytest.param(
            "extender:\n  regions: [FR, Narnia]\n",
            "extender.regions[1]: unknown region 'Narnia'; known: GB",
            id="ranked region",
        ),
        pytest.param(
            "scaler:\n  workloads:"
            + _workload("web", "GB")
            + _workload("web-copy", "GB", target="web"),
            "scaler.workloads[1].target: workloads 'web' and 'web-copy' both scale "
            "Deployment a/web",
            id="one target, two workloads",
        ),
        pytest.param(
            "kube:\n  shards: 8\nscaler:\n  state_store: configmap\n",
            "scaler.state_store: 'configmap' keeps one replica's counters; with kube.shards > 0",
            id="sharded scaler with one ConfigMap checkpoint",
        ),
    ],
)
def test_broken_reference_is_a_readable_error(
    tmp_path: Path, yaml_text: str, expected: str
) -> None:
    code, out = _check(tmp_path, yaml_text)
    assert code == 2
    assert "gridshift: configuration error (1 problem" in out
    assert expected in out
    assert "(from file:" in out
    assert "Traceback" not in out


def test_paths_and_sources_as_the_loader_writes_them(tmp_path: Path) -> None:
    """A cross-reference problem reads like the loader's own: `[i]` for list items and the
    file's line and column, beside a loader problem in the same file."""
    text = "scaler:\n  workloads:" + _workload("web", "GBB") + _workload("batch", "GB")
    text += "extender:\n  regions: [FR, Narnia]\n"
    code, out = _check(tmp_path, text)
    assert code == 2
    lines = out.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("  - ")]
    assert [lines[i].split(":")[0] for i in heads] == [
        "  - scaler.workloads[0].region",
        "  - extender.regions[1]",
    ]
    # the first workload's region key (line 8), the flow list's second item (line 17)
    assert lines[heads[0] + 1].endswith("gridshift.yaml, line 8, column 7)")
    assert lines[heads[1] + 1].endswith("gridshift.yaml, line 17, column 17)")
    # a loader problem in the same file says it the same way
    text = "scaler:\n  workloads:" + _workload("web", "GB").replace("20", "-1")
    code, out = _check(tmp_path, text)
    assert code == 2
    assert "scaler.workloads[0].capacity_per_replica: Input should be greater than 0" in out
    assert "gridshift.yaml, line 7, column" in out


def test_same_target_name_in_other_namespaces_is_fine(tmp_path: Path) -> None:
    text = "scaler:\n  workloads:" + _workload("web", "GB")
    text += _workload("web-b", "GB", target="web", namespace="b")
    assert _check(tmp_path, text)[0] == 0


def test_every_problem_at_once_and_run_refuses_too(tmp_path: Path) -> None:
    text = "scaler:\n  workloads:" + _workload("web", "GBB")
    text += "extender:\n  default_region: DEE\n"
    code, out = _check(tmp_path, text)
    assert code == 2
    assert "(2 problems)" in out
    code, out = _check(tmp_path, text, "run", "--listen", "127.0.0.1:0")
    assert code == 2
    assert "unknown region 'GBB'" in out
