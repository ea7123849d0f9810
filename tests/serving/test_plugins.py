"""A backend of one's own: docs/plugins.md's example, installed as a distribution on the fly
(its module and a dist-info with the entry point, on PYTHONPATH), served by a real server from
the page's YAML, and reached with the openai SDK. The page's code is what runs here."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from pocketserve.backends import load_engine
from pocketserve.config import ModelSpec
from tests.conftest import start_server, stop_server

DOC = Path(__file__).parents[2] / "docs" / "plugins.md"


def _block(name: str) -> str:
    """The page's code block whose first line is the comment `# <name>`."""
    for match in re.finditer(r"```\w+\n(.*?)```", DOC.read_text("utf-8"), re.S):
        first, _, rest = match.group(1).partition("\n")
        if first == f"# {name}":
            return rest
    raise AssertionError(f"docs/plugins.md has no code block for {name}")


def _install(site: Path) -> None:
    """What `pip install` of the page's pyproject leaves behind, without pip."""
    project = tomllib.loads(_block("pyproject.toml"))["project"]
    (site / "reverser.py").write_text(_block("reverser.py"))
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
             for group, points in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines))


def test_an_entry_point_backend_serves_chat(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    config = tmp_path / "reverser.yaml"
    config.write_text(_block("reverser.yaml"))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    server = start_server([], "--config", str(config), env={"PYTHONPATH": path},
                          timeout_s=60)
    try:
        client = server.client()
        messages = [{"role": "user", "content": "hello world"}]
        reply = client.chat.completions.create(model="reverser", messages=messages)
        assert reply.choices[0].message.content == "DLROW OLLEH"  # as the page says
        assert "DLROW OLLEH" in DOC.read_text("utf-8")
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None and reply.usage.total_tokens == 4

        stream = client.chat.completions.create(model="reverser", messages=messages,
                                                stream=True, max_tokens=1)
        chunks = [c.choices[0] for c in stream if c.choices]
        assert "".join(c.delta.content or "" for c in chunks) == "DLROW"
        assert chunks[-1].finish_reason == "length"

        listed = httpx.get(server.base_url + "/v1/models/reverser").json()
        assert listed["context_length"] == 1024  # the engine's info()
    finally:
        stop_server(server)


def test_an_entry_point_that_builds_no_engine_is_named(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notanengine.py").write_text("def build(spec, path, threads):\n    return 42\n")
    info = tmp_path / "notanengine-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: notanengine\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pocketserve.backends]\nbroken = notanengine:build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec(id="x", capability="chat", backend="broken", source="none:")
    with pytest.raises(TypeError, match="'broken' built a int without info, operations"):
        load_engine(spec, Path(os.devnull), 1)
