"""``tether doctor``: what the kernel offers, in text and JSON, exit 0."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tether.cli import cli
from tether.isolation._probe import probe


def test_doctor_prints_the_kernel_and_the_verdict():
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "Landlock:" in result.output
    assert "seccomp filters:" in result.output
    assert "isolation: process plugins:" in result.output
    assert "memory:" in result.output


def test_doctor_json_matches_the_probe():
    result = CliRunner().invoke(cli, ["doctor", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    features = probe()
    assert data["landlock_abi"] == features.landlock_abi
    assert data["cgroup_v1"] == list(features.cgroup_v1)
    assert data["process_plugins"]["verdict"] in ("enforced", "refused")
    assert set(data["process_plugins"]["limits"]) == {
        "memory", "cpu_time", "open_files", "processes"
    }  # fmt: skip
    if data["process_plugins"]["verdict"] == "refused":
        assert data["process_plugins"]["missing"]
