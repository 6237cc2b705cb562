"""The README's Python snippets run as written, and its command lines are ones the CLI takes."""

import re
import shlex
from pathlib import Path

import pytest

from ppgen import runs
from ppgen.cli import build_parser, main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def commands() -> list[list[str]]:
    """Every ``ppgen ...`` command of the README's shell blocks, as argv (continuation lines
    joined, ``&&`` chains split, comments dropped)."""
    out = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["ppgen"]:
                    out.append(words[1:])
    return out


def test_the_readme_has_what_these_tests_read():
    assert len(blocks("python")) >= 2 and len(commands()) >= 7


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet_runs_as_written(index, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # a snippet that writes, writes here
    exec(compile(blocks("python")[index], f"README.md python block {index + 1}", "exec"), {})
    assert "nan" not in capsys.readouterr().out.lower()


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_command_line_parses_and_builds_its_run(argv, monkeypatch, tmp_path, capsys):
    """Each command parses; each new training run builds its config (the recipe's checks
    included) up to the point where it would start training."""
    build_parser().parse_args(argv)  # argparse exits on anything it refuses
    if argv[0] != "train" or "--resume" in argv:
        return  # these need the run that an earlier line trains
    built = []

    def stop(config, out, **kwargs):
        built.append(config)
        raise KeyboardInterrupt  # leaves before any data is read or anything written

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "train", stop)
    assert main(argv) == 130, capsys.readouterr().err
    assert built[0].model == argv[1]
    assert not any(tmp_path.iterdir())
