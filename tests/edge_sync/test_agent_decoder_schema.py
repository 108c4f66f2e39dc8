"""Manifest schema 4 (the decoder block) on a device: an agent that knows it decides exactly as from a
legacy manifest; an agent that knows only schemas 1 to 3 refuses it by its version and keeps its model.
"""

import shutil

import pytest

import edge_sync.contract.manifest as manifest_module
import edge_sync.contract.signing as signing_module
from edge_sync.contract import DECODER_SCHEMA_VERSION, Task, decoder_for
from tests.edge_sync.test_agent import Env, _package, _signed, _write_image, artifacts, env

__all__ = ["artifacts", "env"]


def _decisions(env: Env, seeds: range) -> list[tuple[str, str, float, tuple[float, ...]]]:
    agent = env.agent()
    for seed in seeds:
        _write_image(env.camera / f"img{seed}.png", seed)
    return [(d.predicted_class, d.verdict, d.defect_score, d.probabilities) for d in agent.inspect_pending()]


def test_a_schema_4_manifest_decides_exactly_like_its_legacy_twin(env: Env) -> None:
    fields = decoder_for(Task.CLASSIFY).manifest_fields(0.5)
    assert fields["schema_version"] == DECODER_SCHEMA_VERSION and fields["decoder"]["threshold"] == 0.5
    env.deploy("v1")  # schema 2, threshold 0.5, no decoder block
    assert env.agent().sync_once().status == "activated"
    legacy = _decisions(env, range(6))
    shutil.rmtree(env.camera / "processed")

    env.deploy("v2", **fields)
    outcome = env.agent().sync_once()
    assert (outcome.status, outcome.model_version) == ("activated", "v2")
    assert _decisions(env, range(6)) == legacy and len(legacy) == 6


def test_an_agent_that_knows_schema_3_refuses_schema_4_and_keeps_running(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.deploy("v1")
    agent = env.agent()
    assert agent.sync_once().status == "activated"
    newer = _signed(env.art, "v2", **decoder_for(Task.CLASSIFY).manifest_fields(0.5))
    # What an agent released before schema 4 knows (it checks the version before reading anything else).
    monkeypatch.setattr(signing_module, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1, 2, 3}))
    monkeypatch.setattr(manifest_module, "SUPPORTED_SCHEMA_VERSIONS", frozenset({1, 2, 3}))
    env.server.deploy(newer, _package(env.art))

    outcome = agent.sync_once()

    assert outcome.status == "refused"
    assert "schema version 4" in outcome.detail and "update the edge agent" in outcome.detail
    assert "still running v1" in outcome.detail and agent.active_version == "v1"
    assert not [r for r in env.server.package_requests() if "/v2/" in r.url.path]
    _write_image(env.camera / "a.png", 1)
    assert [d.model_version for d in agent.inspect_pending()] == ["v1"]
    assert agent.sync_once().status == "refused" and agent.active_version == "v1"  # and stays so
