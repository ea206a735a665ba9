# SPDX-License-Identifier: MIT
"""The one file a clinician hands `ppi explain`, read into an image or a volume.

Accepted: a DICOM file (single-frame CT/MR/CR/photo, multi-frame OCT or cine), a DICOM series
folder, NIfTI, Duke `.mat`, `.npy`/`.npz`, a PNG/JPEG/TIFF image, or a folder of B-scan images.
The format is chosen by content where extensions lie (a DICOM file needs no `.dcm`).

What the model needs decides the shape: a 2D model gets one image (from a stack, the slice asked
for, else the middle one, with a note); a volume model gets the whole stack. OCT volumes go through
the GA readers (`ppi_cli.data.oct.readers`) so `explain` sees exactly what `prepare ga` saw; other
DICOM goes through `ppi_cli.data.dicom.images`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ppi_cli.data.dicom.headers import is_dicom_file, read_slice_hu
from ppi_cli.data.dicom.images import read_dicom_header, read_dicom_image, series_files
from ppi_cli.data.limits import check_volume_size, npy_shape, open_image
from ppi_cli.data.oct.readers import read_volume
from ppi_cli.data.voxel_grid import VoxelGrid, dicom_grid, nifti_grid
from ppi_cli.errors import DataError
from ppi_cli.files import IMAGE_SUFFIXES

__all__ = ["LoadedInput", "load_input", "source_headers", "luma", "VOLUME_SUFFIXES"]

VOLUME_SUFFIXES = (".mat", ".npy", ".npz", ".nii", ".nii.gz")
_OPT_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography Image Storage


@dataclass
class LoadedInput:
    """An input ready for preprocessing.

    `pixels` is float32: (H, W) grey or (H, W, 3) colour for `kind="image"`; (S, H, W) for
    `kind="volume"`. `header` (DICOM inputs only) is kept for the secondary capture and is never
    printed or written anywhere else. `grid` is where the whole input (the stack, when one slice of
    it is explained) lies in the patient, for NIfTI and DICOM inputs that say so.
    """

    pixels: np.ndarray
    kind: Literal["image", "volume"]
    source: str  # dicom, dicom-series, nifti, mat, npy, image, image-folder
    spacing_mm: tuple[float, ...] | None = None  # (row, col) for images; (slice, row, col) when known
    modality: str = ""
    units: str = "raw"  # "HU" for calibrated CT
    header: Any = None
    slice_index: int | None = None  # the slice of a stack a 2D image was taken from
    n_slices: int | None = None
    notes: list[str] = field(default_factory=list)
    grid: VoxelGrid | None = None


def load_input(path: str | Path, kind: Literal["image", "volume"] = "image",
               slice_index: int | None = None) -> LoadedInput:
    """Read `path` into what a 2D (`image`) or volume (`volume`) model explains.

    Args:
        path: File or folder.
        kind: What the model takes.
        slice_index: For a 2D model on a stack, the 0-based slice; None takes the middle one.

    Raises:
        DataError: Unreadable, unsupported, or the wrong kind (a single image for a volume model).
        MissingExtraError: Compressed DICOM without a decoder (extra `codecs`), or a vendor OCT
            format without the `oct` extra.

    Example:
        >>> load_input("slice.dcm", "image").pixels.shape
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", hint="check the INPUT path")
    if path.is_dir():
        return _from_folder(path, kind, slice_index)
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return _from_picture(path, kind)
    if name.endswith(VOLUME_SUFFIXES) and not is_dicom_file(path):
        loaded = _from_oct_reader(path) if kind == "volume" else _pick(_from_array_file(path), slice_index)
        if name.endswith((".nii", ".nii.gz")):
            loaded.grid = nifti_grid(path)
        return loaded
    return _from_dicom(path, kind, slice_index)


def _from_dicom(path: Path, kind: str, slice_index: int | None) -> LoadedInput:
    header = read_dicom_header(path)
    if str(header.get("SOPClassUID", "")) == _OPT_CLASS or header.get("Modality") == "OPT":
        loaded = _from_oct_reader(path, header=header)  # frames in stack order, as prepare ga reads them
        return loaded if kind == "volume" else _pick(loaded, slice_index)
    if kind == "image" and _single_ct_slice(header):
        return _from_ct_slice(path, header)
    img = read_dicom_image(path)
    frames = int(img.header.get("NumberOfFrames", 1) or 1)
    grey = img.pixels if img.pixels.ndim == 2 + (frames > 1) else luma(img.pixels)
    if frames > 1:
        loaded = LoadedInput(grey.reshape(frames, *grey.shape[-2:]), "volume", "dicom", img.spacing_mm,
                             img.modality, img.units, img.header)
        return loaded if kind == "volume" else _pick(loaded, slice_index)
    if kind == "volume":
        raise DataError(f"{path}: a single image, but this model explains volumes (OCT B-scan stacks)",
                        hint="pass the multi-frame file or the series folder")
    spacing = img.spacing_mm[-2:] if img.spacing_mm else None
    return LoadedInput(img.pixels, "image", "dicom", spacing, img.modality, img.units, img.header,
                       grid=dicom_grid([img.header], *img.pixels.shape[:2]))


def _single_ct_slice(header: Any) -> bool:
    return (str(header.get("Modality", "")).upper() == "CT" and int(header.get("NumberOfFrames", 1) or 1) == 1
            and int(header.get("SamplesPerPixel", 1) or 1) == 1)


def _from_ct_slice(path: Path, header: Any) -> LoadedInput:
    """A CT slice in HU, decoded by the LIDC reader so explain sees the HU `prepare lidc` saw."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warnings may quote header values
        hu, spacing = read_slice_hu(path)
    known = header.get("PixelSpacing") is not None  # read_slice_hu reports 1 mm when the tag is absent
    hu = np.asarray(hu, dtype=np.float32)
    return LoadedInput(hu, "image", "dicom", tuple(spacing) if known else None, "CT", "HU", header,
                       grid=dicom_grid([header], *hu.shape))


def _from_folder(path: Path, kind: str, slice_index: int | None) -> LoadedInput:
    entries = [p for p in path.iterdir() if p.is_file()]
    if any(is_dicom_file(p) or p.suffix.lower() == ".dcm" for p in entries):
        return _from_series(path, kind, slice_index)
    if not any(p.name.lower().endswith(IMAGE_SUFFIXES) for p in entries):
        raise DataError(f"{path}: folder holds neither DICOM files nor B-scan images",
                        hint="pass a series folder, a folder of PNG/TIFF B-scans, or one file")
    loaded = _from_oct_reader(path)
    return loaded if kind == "volume" else _pick(loaded, slice_index)


def _from_series(path: Path, kind: str, slice_index: int | None) -> LoadedInput:
    files = series_files(path)
    n = len(files)
    if kind == "image":
        index = _slice_choice(n, slice_index, path)
        loaded = _from_dicom(files[index][0], "image", None)
        loaded.source, loaded.slice_index, loaded.n_slices = "dicom-series", index, n
        loaded.grid = dicom_grid([h for _, h in files], *loaded.pixels.shape[:2])
        if slice_index is None and n > 1:
            loaded.notes.append(f"slice {index} of {n} (the middle one; choose with --slice)")
        return loaded
    images = [read_dicom_image(p) for p, _ in files]
    shapes = {im.pixels.shape for im in images}
    if len(shapes) != 1 or images[0].pixels.ndim != 2:
        raise DataError(f"{path}: slices differ in size or are not single grey images ({sorted(shapes)})",
                        hint="pass one series of equal-sized slices")
    first = images[0]
    step = _series_step([h for _, h in files])
    spacing = (step, *first.spacing_mm[-2:]) if step and first.spacing_mm else first.spacing_mm
    return LoadedInput(np.stack([im.pixels for im in images]), "volume", "dicom-series", spacing,
                       first.modality, first.units, first.header, n_slices=n,
                       grid=dicom_grid([h for _, h in files], *first.pixels.shape))


def _from_picture(path: Path, kind: str) -> LoadedInput:
    if kind == "volume":
        raise DataError(f"{path}: a single image, but this model explains volumes (OCT B-scan stacks)",
                        hint="pass the folder of B-scan images or a volume file")
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as im:  # the size is checked from the header before decoding
            if im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA"):
                arr = np.asarray(im.convert("RGB"), dtype=np.float32)
            else:
                arr = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if arr.ndim == 3 and np.ptp(arr, axis=2).max(initial=0) == 0:  # a grey picture saved as RGB
        arr = arr[..., 0]
    return LoadedInput(arr, "image", "image")


def _from_array_file(path: Path) -> LoadedInput:
    """A `.npy` or NIfTI image for a 2D model, values untouched (CT NIfTI keeps its HU)."""
    name = path.name.lower()
    if name.endswith(".npy"):
        try:
            check_volume_size(path, npy_shape(path))
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        spacing, source = None, "npy"
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            img = nib.load(path)
            check_volume_size(path, img.shape)
            arr = np.asarray(img.dataobj, dtype=np.float32)
        except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
            raise DataError(f"{path}: not a readable NIfTI file ({type(exc).__name__})") from None
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        arr = np.squeeze(arr)
        if arr.ndim == 3:  # voxel axes (x, y, z) as ITK writes them -> numpy (z, y, x)
            arr, spacing = arr.transpose(2, 1, 0), (zooms[2], zooms[1], zooms[0])
        else:
            arr, spacing = arr.T, (zooms[1], zooms[0])
        source = "nifti"
    else:  # Duke .mat and .npz: volumes only, read as prepare reads them
        loaded = _from_oct_reader(path)
        return loaded
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3 and source == "npy"):
        return LoadedInput(arr, "image", source, spacing)
    if arr.ndim == 3:
        return LoadedInput(arr, "volume", source, spacing)
    raise DataError(f"{path}: array of shape {arr.shape} is neither an image (H, W) nor a stack (S, H, W)")


def _from_oct_reader(path: Path, header: Any = None) -> LoadedInput:
    """A volume read exactly as `prepare ga` reads it (uint8 B-scans, frames in stack order)."""

    volume = read_volume(path)
    loaded = LoadedInput(volume.array.astype(np.float32), "volume", volume.source_format, volume.spacing_mm,
                         "OPT" if header is not None else "", "uint8", header, n_slices=volume.array.shape[0])
    if volume.notes:
        loaded.notes.append(volume.notes)
    return loaded


def _pick(loaded: LoadedInput, slice_index: int | None) -> LoadedInput:
    """One slice of a stack for a 2D model."""
    if loaded.kind == "image":
        return loaded
    n = loaded.pixels.shape[0]
    index = _slice_choice(n, slice_index, None)
    spacing = loaded.spacing_mm[-2:] if loaded.spacing_mm else None
    notes = list(loaded.notes)
    if slice_index is None and n > 1:
        notes.append(f"slice {index} of {n} (the middle one; choose with --slice)")
    return LoadedInput(loaded.pixels[index], "image", loaded.source, spacing, loaded.modality, loaded.units,
                       loaded.header, index, n, notes, loaded.grid)


def source_headers(path: str | Path) -> list[Any]:
    """The DICOM headers (no pixel data) of an input in the order its slices were stacked: a series
    folder's files along the slice axis, or the one file. For objects that reference their sources.

    Raises:
        DataError: Not a DICOM file or series folder.
    """
    path = Path(path)
    if path.is_dir():
        return [header for _, header in series_files(path)]
    return [read_dicom_header(path)]


def _slice_choice(n: int, slice_index: int | None, path: Path | None) -> int:
    if slice_index is None:
        return n // 2
    if not 0 <= slice_index < n:
        where = f"{path}: " if path else ""
        raise DataError(f"{where}--slice {slice_index} is outside the {n} slices (0 to {n - 1})",
                        hint=f"--slice {n // 2}")
    return slice_index


def _series_step(headers: list[Any]) -> float | None:
    try:
        z = [float(h.ImagePositionPatient[2]) for h in headers]
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    steps = np.abs(np.diff(z))
    return float(np.median(steps)) if steps.size and np.median(steps) > 0 else None


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of the last (RGB) axis: colour cine frames become grey B-scans."""
    return (rgb[..., :3] @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
