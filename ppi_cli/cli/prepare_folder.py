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
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Turn an ImageFolder tree into a prepared cache for the VGG11 recipes (CUB, CIFAR-10)."""
    # Imported here, not at the top: `ppi --help` imports every verb module (cli/main.py).
    from ppi_cli.console import paths, stdout
    from ppi_cli.data.folder.prepare import FolderPrepareConfig, prepare_folder
    from ppi_cli.workspace import Workspace

    target = out or Workspace.resolve(workspace).cache("folder")
    result = prepare_folder(FolderPrepareConfig(root=root, out=target, size=size, channels=channels, strict=strict))
    stdout.print(f"{result.n_images} images, {len(result.classes)} classes, {result.size}×{result.size}, "
                 f"{result.n_errors} skipped -> {result.cache}")
    paths(read=[root], wrote=result.written)


def register(group: typer.Typer) -> None:
    """Attach `folder` to the `prepare` group."""
    group.command("folder")(folder_cmd)
