# SPDX-License-Identifier: MIT
"""`ppi prepare folder`: an ImageFolder-layout photo collection into a `folder` cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ppi_cli.cli.options import OutOpt, StrictOpt, WorkspaceOpt

__all__ = ["register"]


def folder_cmd(
    *,
    root: Annotated[Path, typer.Option("--root", help="Folder with one sub-folder per class, optionally under "
                                       "train/, val/ and test/ (CUB, CIFAR-10 exported as images).")],
    out: OutOpt = None,
    size: Annotated[int | None, typer.Option("--size", min=8, help="Side of the stored square images (shorter "
                                             "side resized, centre crop). Default: the native size when every "
                                             "image is the same square, else 256.", show_default=False)] = None,
    channels: Annotated[int, typer.Option("--channels", min=1, max=3, help="3 stores RGB, 1 stores grey.")] = 3,
    subject_regex: Annotated[str | None, typer.Option(
        "--subject-regex", help="Group images by subject: a regular expression searched in each file name; its "
        "first group (or the group named 'subject') is the subject id, e.g. '^(P\\d+)_'. Splits keep a "
        "subject's images together. Default: each image is its own subject.", show_default=False)] = None,
    subjects: Annotated[Path | None, typer.Option(
        "--subjects", help="Group images by subject from a CSV with columns file, subject_id (file: the path under "
        "--root, or the file name when unique).", show_default=False)] = None,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Turn an ImageFolder tree into a prepared cache for the VGG11 recipes (CUB, CIFAR-10)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.console import paths, stdout
    from ppi_cli.data.folder.prepare import FolderPrepareConfig, prepare_folder
    from ppi_cli.workspace import Workspace

    target = out or Workspace.resolve(workspace).cache("folder")
    result = prepare_folder(FolderPrepareConfig(root=root, out=target, size=size, channels=channels, strict=strict,
                                                subject_regex=subject_regex, subjects=subjects))
    stdout.print(f"{result.n_images} images, {len(result.classes)} classes, {result.size}×{result.size}, "
                 f"{result.n_errors} skipped -> {result.cache}")
    paths(read=[root] + ([subjects] if subjects is not None else []), wrote=result.written)


def register(group: typer.Typer) -> None:
    """Attach `folder` to the `prepare` group."""
    group.command("folder")(folder_cmd)
