"""`make lab` without a browser: the settings it installs, the server it starts, and that saving a
chapter from JupyterLab (jupytext's contents manager, as Lab calls it) leaves the .py unchanged."""

from __future__ import annotations

import json
import shutil

import pytest
from browser import labcheck

from rlhf_nb._site import lab
from rlhf_nb._site.build import notebook_sources


def test_overrides_open_python_files_as_notebooks_and_merge(tmp_path):
    target = tmp_path / "settings" / "overrides.json"
    target.parent.mkdir()
    target.write_text(json.dumps({"@jupyterlab/docmanager-extension:plugin": {"autosave": False},
                                  "other:plugin": {"x": 1}}))  # fmt: skip
    lab.install_settings(target)
    merged = json.loads(target.read_text())
    doc = merged["@jupyterlab/docmanager-extension:plugin"]
    assert doc["defaultViewers"]["python"] == "Jupytext Notebook"
    assert doc["autosave"] is False and merged["other:plugin"] == {"x": 1}  # kept


def test_lab_command_is_loopback_rooted_and_validated(tmp_path, capsys):
    cmd = lab.command(root=tmp_path, port=8899, browser=False)
    assert cmd[1] == "lab" and f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd
    assert "--no-browser" in cmd
    assert f"--LabApp.default_url=/lab/tree/{lab.FIRST_PAGE}" in cmd
    assert (lab.ROOT / lab.FIRST_PAGE).exists()
    with pytest.raises(SystemExit):
        lab.main(["--port", "0"])
    assert "--port must be in [1, 65535]" in capsys.readouterr().err


@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_saving_from_lab_keeps_the_py_unchanged(source, tmp_path):
    from jupytext import TextFileContentsManager

    shutil.copy(lab.ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # jupytext's config
    (tmp_path / "notebooks").mkdir()
    shutil.copy(source, tmp_path / "notebooks" / source.name)
    cm = TextFileContentsManager(root_dir=str(tmp_path))
    path = f"notebooks/{source.name}"
    model = cm.get(path, content=True, type="notebook")
    # what a kernel adds before a save
    model["content"]["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    cm.save(model, path)
    assert (tmp_path / path).read_text() == source.read_text()
    assert (tmp_path / "notebooks" / f"{source.stem}.ipynb").exists()  # the pair is written


def test_scratch_copy_sets_smoke(tmp_path):
    root = labcheck.scratch_copy(["01_maxent_optimal_policy"], tmp_path)
    text = (root / "notebooks" / "01_maxent_optimal_policy.py").read_text()
    assert "\nSMOKE = True" in text and "\nSMOKE = False" not in text
    assert (root / "pyproject.toml").exists()
