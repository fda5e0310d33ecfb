"""``camseg-pcam --help`` and every sub-command's help: plain text, choices, defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from camseg_pcam.cli import main

COMMANDS = ["make-synthetic", "train", "evaluate", "predict", "demo"]
RST = re.compile(r"``|:(func|class|data|meth|mod|attr|exc|obj):|`[^`]+`")


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_has_no_rst_markup(capsys: pytest.CaptureFixture[str], command: str | None) -> None:
    text = _help(capsys, *([command] if command else []))
    found = RST.findall(text)
    assert not RST.search(text), f"RST markup in {command or 'top-level'} --help: {found}"


def test_top_level_help_describes_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    for command in COMMANDS:
        line = re.search(rf"^\s+{re.escape(command)}\s*\n?\s*(\S.*)$", text, re.M)
        assert line, f"{command} has no one-line description in --help"


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_has_a_description(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    text = _help(capsys, command)
    paragraphs = text.split("\n\n")
    assert len(paragraphs) > 2 and paragraphs[1].strip(), text


def test_train_help_shows_defaults_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(capsys, "train").split())
    assert "--model {small,resnet18," in text
    assert "--amp {auto,none,bf16,fp16}" in text
    assert "--head {gap,mil}" in text
    for default in ("(default: small)", "(default: 64)", "(default: 0.001)", "(default: auto)"):
        assert default in text


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        ("make-synthetic", ["(default: [2048, 512, 512])", "(default: 32)"]),
        ("evaluate", ["(default: best.pt)", "(default: test)", "(default: 128)"]),
        ("predict", ["(default: best.pt)", "(default: cpu)"]),
        ("demo", ["(default: runs/demo)", "(default: 6)", "(default: 8)"]),
    ],
)
def test_every_option_with_a_default_shows_it(
    capsys: pytest.CaptureFixture[str], command: str, defaults: list[str]
) -> None:
    text = " ".join(_help(capsys, command).split())
    for default in defaults:
        assert default in text, f"{default} missing from {command} --help"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "resnet9000"],
        ["train", "--epochs", "many"],
        ["evaluate", "--run", "x"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err, err


def test_runtime_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["train", "--data", "/nonexistent/camseg", "--out", str(tmp_path), "--epochs", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err
