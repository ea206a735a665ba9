# SPDX-License-Identifier: MIT
from __future__ import annotations

import os
import subprocess
import sys

from ppi_cli import __version__
from ppi_cli.cli.main import VERBS


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"ppi {__version__}"


def test_help_lists_every_verb(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for verb in VERBS:
        assert f" {verb} " in result.stdout, verb


def test_no_args_shows_help(cli):
    result = cli()
    assert "Usage" in result.stdout and result.exit_code == 2


def test_misspelt_recipe_key_exits_1_with_suggestion(cli, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("schedule:\n  epoch: 3\n")
    result = cli("recipe", "show", str(path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "schedule.epoch" in lines[0] and "did you mean 'schedule.epochs'" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_file_exits_1_one_line(cli, tmp_path):
    result = cli("recipe", "show", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_keeps_exit_2(cli):
    assert cli("recipe", "show", "--no-such-flag").exit_code == 2


def test_recipe_show_applies_overrides(cli):
    result = cli("recipe", "show", "synthetic-ppi-wbp-cpu", "--set", "optim.lr=0.25")
    assert result.exit_code == 0 and "lr: 0.25" in result.stdout


def test_set_null_turns_a_field_off_rather_than_being_ignored(cli):
    """`--set key=null` sets the field to null (here the collapse guard that ga-ppi-wbp-cpu carries), where a
    value left out changes nothing; a field that cannot be null says so."""
    assert "fallback_drop: 0.02," in cli("recipe", "show", "ga-ppi-wbp-cpu").stdout
    result = cli("recipe", "show", "ga-ppi-wbp-cpu", "--set", "ppi.fallback_drop=null")
    assert result.exit_code == 0 and "fallback_drop: null," in result.stdout
    refused = cli("recipe", "show", "ga-ppi-wbp-cpu", "--set", "optim.lr=null")
    assert refused.exit_code == 1 and "optim.lr" in refused.stderr


def _ppi(args, debug):
    env = dict(os.environ, PPI_DEBUG="1" if debug else "0")
    return subprocess.run([sys.executable, "-m", "ppi_cli", *args], capture_output=True, text=True, env=env)


def test_traceback_only_with_ppi_debug(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  lrr: 1\n")
    quiet = _ppi(["recipe", "show", str(path)], debug=False)
    loud = _ppi(["recipe", "show", str(path)], debug=True)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    assert "optim.lrr" in quiet.stderr.strip().splitlines()[-1]
