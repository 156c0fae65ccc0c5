"""The documentation (issue 29): the site builds strictly, the README stays a front door whose
quick start is the example the tests run, and the citation metadata agrees with the package."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

import ienet_tf

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_site_builds_strictly_with_generated_cli_and_api_pages(tmp_path):
    """`mkdocs build --strict`: a broken link, anchor or API reference fails."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (tmp_path / "cli" / "index.html").read_text()
    for command in ("train", "tune", "evaluate", "cost", "export", "report", "bench"):
        assert f"usage: ienet {command}" in cli  # generated from the parser at build time
    layers = (tmp_path / "api" / "layers" / "index.html").read_text()
    assert "IEBinaryConv2D" in layers
    # The larq-style "# Arguments" block becomes the parameter table mkdocstrings renders.
    assert "lambda_mode" in layers and "doc-section-title" in layers
    assert (tmp_path / "results" / "index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    """The strict build is a real check: the same site with one dead anchor fails."""
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    (docs / "campaign.md").write_text(
        (docs / "campaign.md").read_text() + "\n[dead](results.md#no-such-heading)\n"
    )
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    handler = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = [str(ROOT)]
    handler["options"]["extensions"] = [
        str(ROOT / extension) for extension in handler["options"]["extensions"]
    ]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    site = tmp_path / "site"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mkdocs", "build", "--strict"),
            *("-f", str(tmp_path / "mkdocs.yml"), "--site-dir", str(site)),
        ],
        cwd=ROOT,  # the snippets (CHANGELOG.md) are read from the working directory
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode != 0
    assert "no-such-heading" in done.stderr


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) < 150
    assert max(len(line) for line in text.splitlines()) <= 100
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_readme_quick_start_is_the_example_the_tests_run():
    """The quick start runs as written: it is examples/own_model.py, which
    tests/test_examples.py executes."""
    quick_start = _python_blocks(README.read_text().split("## Quick start", 1)[1])[0]
    example = (ROOT / "examples" / "own_model.py").read_text()
    code = example.split('"""', 2)[2].lstrip("\n")
    assert quick_start == code


def test_citation_names_this_version_and_the_three_papers():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == ienet_tf.__version__
    titles = " ".join(reference["title"] for reference in citation["references"])
    for paper in ("IE-Net", "IR2Net", "Elastic-Link"):
        assert paper in titles
