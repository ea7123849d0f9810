from __future__ import annotations

from pathlib import Path

import pytest

from pocketserve.config import Settings


def test_defaults_bind_loopback() -> None:
    s = Settings()
    assert s.host == "127.0.0.1" and s.port == 8000
    assert "smollm2-135m-instruct" in s.models


def test_precedence_override_env_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 9001\nthreads: 3\nlog_level: debug\n"
                   "extra_models:\n  - {id: mine, capability: chat, backend: llamacpp, "
                   "source: /tmp/x.gguf}\n")
    monkeypatch.setenv("POCKETSERVE_THREADS", "2")
    s = Settings(config_file=cfg, log_level="error")
    assert s.port == 9001  # from YAML
    assert s.threads == 2  # env beats YAML
    assert s.log_level == "error"  # override beats all
    assert s.extra_models[0].id == "mine"


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: [a, b]\n")
    monkeypatch.setenv("POCKETSERVE_CONFIG_FILE", str(cfg))
    assert Settings().models == ["a", "b"]


def test_bad_yaml_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- just a list\n")
    with pytest.raises(ValueError, match="mapping"):
        Settings(config_file=cfg)


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETSERVE_PORT", "99999")
    with pytest.raises(ValueError):
        Settings()
