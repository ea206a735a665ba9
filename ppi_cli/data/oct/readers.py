# SPDX-License-Identifier: MIT
"""OCT volume readers: every format becomes `(n_bscans, H, W)` uint8 plus spacing in mm.

Axes are fixed for the whole toolkit: axis 0 is the B-scan index (slow scan), axis 1 the depth
(axial samples, top = vitreous) and axis 2 the A-scan index along the B-scan. Spacing follows the
same order: (between B-scans, axial, lateral), as in the site configs.

The format is chosen from the file's first bytes (MATLAB, HDF5, DICOM, NIfTI, gzip, NumPy, zip,
PNG/TIFF, Heidelberg, Topcon), so a `.mat` that is really HDF5 or a DICOM without extension is read
correctly; the extension only decides for vendor formats without a known signature (`.e2e`, `.oct`).
See data-protocols.md part B and docs/prepare-ga.md#readers.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from ppi_cli.data.limits import check_image_size, check_volume_size, npy_shape, open_image
from ppi_cli.data.oct.dicom import read_dicom_opt
from ppi_cli.data.oct.vendor import read_vendor
from ppi_cli.data.oct.volume import OctVolume, as_bscan_stack, to_uint8
from ppi_cli.errors import DataError, PpiError
from ppi_cli.files import IMAGE_SUFFIXES

__all__ = ["read_volume", "detect_format", "FORMATS"]

# Format ids as they appear in the cache manifest's `source_format` column.
FORMATS = ("duke-mat", "duke-mat-v73", "dicom", "nifti", "npy", "npz", "image-folder", "image",
           "heidelberg-e2e", "heidelberg-vol", "topcon-fds", "topcon-fda", "bioptigen-oct")
_VENDOR_BY_SUFFIX = {".e2e": "heidelberg-e2e", ".sdb": "heidelberg-e2e", ".vol": "heidelberg-vol",
                     ".fds": "topcon-fds", ".fda": "topcon-fda", ".oct": "bioptigen-oct"}


def read_volume(path: str | Path) -> OctVolume:
    """Read an OCT volume of any supported format.

    Example:
        >>> vol = read_volume("Farsiu_Ophthalmology_2013_AMD_Subject_1001.mat")
        >>> vol.array.shape  # (100, 512, 1000)

    Raises:
        DataError: The file is missing, of an unknown format, or unreadable.
        MissingExtraError: A vendor format needs the `oct` extra.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", hint="check the manifest's path column")
    if not (path.is_file() or path.is_dir()):  # a FIFO or device would block the read forever
        raise DataError(f"{path}: not a regular file or folder", hint="check the manifest's path column")
    fmt = "unknown format"
    try:
        fmt = detect_format(path)  # reads the file's head: a truncated or unreadable file fails here already
        volume = _READERS[fmt](path)
    except PpiError:
        raise
    except Exception as exc:  # third-party parsers raise anything on a corrupt file: name the file instead
        raise DataError(f"{path}: cannot read as {fmt} ({type(exc).__name__}: {_first_line(exc)})",
                        hint="check that the file is complete and of the format its content claims") from exc
    return _checked(path, volume)


def detect_format(path: Path) -> str:
    """The format id of `path`, from its content (extension only for signature-less vendor formats).

    Raises:
        DataError: Nothing recognisable.
    """
    if path.is_dir():
        return "image-folder"
    head = _head(path, 1024)
    if head.startswith(b"MATLAB 7.3 MAT-file") or head[512:520] == b"\x89HDF\r\n\x1a\n":
        return "duke-mat-v73"
    if head.startswith(b"MATLAB 5.0 MAT-file") or head.startswith(b"MATLAB"):
        return "duke-mat"
    if head[128:132] == b"DICM":
        return "dicom"
    if _is_nifti(head):
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            if _is_nifti(fh.read(352)):
                return "nifti"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"\x89PNG") or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if head.startswith(b"HSF-OCT"):
        return "heidelberg-vol"
    if head.startswith(b"FOCT"):
        return "topcon-fda" if head[4:7] == b"FDA" else "topcon-fds"
    suffix = path.suffix.lower()
    if suffix in _VENDOR_BY_SUFFIX:
        return _VENDOR_BY_SUFFIX[suffix]
    if suffix in (".jpg", ".jpeg", ".bmp"):
        return "image"
    raise DataError(f"{path}: not a recognised OCT volume format",
                    hint="use Duke .mat, DICOM OPT, NIfTI, .npy/.npz, a folder of PNG/TIFF B-scans or a vendor "
                         "format (.e2e, .vol, .fds, .fda, .OCT); see docs/prepare-ga.md#readers")


# --- open formats -----------------------------------------------------------------------------------------------


def _read_duke_mat(path: Path) -> OctVolume:
    """MATLAB v5/v7 (`scipy.io`): variable `images` is (depth, A-scans, B-scans), B-scan axis last."""
    from scipy.io import loadmat, whosmat

    for _name, shape, _cls in whosmat(str(path)):  # sizes from the variable headers, before anything is loaded
        check_volume_size(path, shape)
    data = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    images = _pick_variable(path, data)
    return _from_duke_layout(path, images, "duke-mat")


def _read_duke_mat_v73(path: Path) -> OctVolume:
    """MATLAB v7.3 is HDF5; h5py sees MATLAB's column-major arrays with their axes reversed."""
    import h5py

    with h5py.File(path, "r") as fh:
        data = {k: v for k, v in fh.items() if isinstance(v, h5py.Dataset) and not k.startswith("#")}
        for dataset in data.values():
            check_volume_size(path, dataset.shape)
        images = np.asarray(_pick_variable(path, data)[()]).T  # reversed HDF5 axes -> MATLAB's (H, W, n)
    return _from_duke_layout(path, images, "duke-mat-v73")


def _from_duke_layout(path: Path, images: np.ndarray, fmt: str) -> OctVolume:
    if images.ndim == 3:
        images = np.moveaxis(images, -1, 0)  # (H, W, n) -> (n, H, W)
    array, notes = to_uint8(as_bscan_stack(images, str(path)))
    return OctVolume(np.ascontiguousarray(array), None, fmt, notes)


def _pick_variable(path: Path, data: dict) -> np.ndarray:
    if "images" in data:
        return data["images"]
    arrays = {k: v for k, v in data.items() if getattr(v, "ndim", 0) in (2, 3)}
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataError(f"{path}: no 'images' variable and {len(arrays)} candidate arrays ({', '.join(sorted(data))})",
                    hint="store the volume as 'images' (depth x A-scans x B-scans), as the Duke files do")


def _read_nifti(path: Path) -> OctVolume:
    """NIfTI-1/2, plain or gzipped: voxel axes (x=A-scan, y=depth, z=B-scan), as ITK writes them."""
    import nibabel as nib

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    # From bytes, so that a NIfTI with a misleading extension still opens.
    image_class = nib.Nifti2Image if raw[4:7] in (b"n+2", b"ni2") else nib.Nifti1Image
    image = image_class.from_bytes(raw)
    check_volume_size(path, image.header.get_data_shape())
    data = np.asanyarray(image.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D NIfTI image, found shape {data.shape}")
    zooms = [float(f"{z:.6g}") for z in image.header.get_zooms()[:3]]  # stored as float32: drop the noise digits
    array, notes = to_uint8(np.transpose(data, (2, 1, 0)))  # (x, y, z) -> (z, y, x) = (n, H, W)
    spacing = (zooms[2], zooms[1], zooms[0]) if all(z > 0 for z in zooms) else None
    return OctVolume(np.ascontiguousarray(array), spacing, "nifti", notes)


def _read_npy(path: Path) -> OctVolume:
    check_volume_size(path, npy_shape(path))
    array, notes = to_uint8(as_bscan_stack(np.load(path, allow_pickle=False), str(path)))
    return OctVolume(np.ascontiguousarray(array), None, "npy", notes)


def _read_npz(path: Path) -> OctVolume:
    """`.npz`: array `volume` (or `images`, or the only array), optional `spacing_mm` of 3 values."""
    with np.load(path, allow_pickle=False) as archive:
        names = [n for n in archive.files if n != "spacing_mm"]
        name = next((n for n in ("volume", "images") if n in names), names[0] if len(names) == 1 else None)
        if name is None:
            raise DataError(f"{path}: several arrays ({', '.join(names)}) and none is named 'volume'",
                            hint="save the volume under the name 'volume'")
        with archive.zip.open(f"{name}.npy") as member:  # the member's header: its shape, before it is read
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            check_volume_size(path, read_header(member)[0])
        array, notes = to_uint8(as_bscan_stack(archive[name], str(path)))
        spacing = None
        if "spacing_mm" in archive.files and archive["spacing_mm"].shape == (3,):
            spacing = tuple(float(v) for v in archive["spacing_mm"])
    return OctVolume(np.ascontiguousarray(array), spacing, "npz", notes)


def _read_image_folder(path: Path) -> OctVolume:
    """One image per B-scan, in natural order of the file names (`b2.png` before `b10.png`)."""
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                   key=natural_key)
    if not files:
        raise DataError(f"{path}: folder holds no B-scan images ({', '.join(IMAGE_SUFFIXES)})",
                        hint="point the manifest at a volume file or a folder of PNG/TIFF B-scans")
    frames: list[np.ndarray] = []
    for file in files:  # the stack so far is checked as it grows: one image at a time is decoded
        frames.append(_grey_frames(file))
        check_volume_size(path, (sum(len(f) for f in frames), *frames[0].shape[1:]))
    for file, frame in zip(files, frames, strict=True):
        if frame.shape[1:] != frames[0].shape[1:]:
            raise DataError(f"{file}: B-scan size {frame.shape[1:]} differs from {frames[0].shape[1:]} of "
                            f"{files[0].name}", hint="all B-scans of a volume must have one size")
    array, notes = to_uint8(np.concatenate(frames))
    return OctVolume(np.ascontiguousarray(array), None, "image-folder", notes)


def _read_image(path: Path) -> OctVolume:
    """A single image file: one B-scan, or a multi-page TIFF with one B-scan per page."""
    array, notes = to_uint8(_grey_frames(path))
    return OctVolume(np.ascontiguousarray(array), None, "image", notes)


def _grey_frames(path: Path) -> np.ndarray:
    from PIL import ImageSequence

    with open_image(path) as image:
        frames = []
        for page in ImageSequence.Iterator(image):
            check_image_size(path, page.size[1], page.size[0])
            check_volume_size(path, (len(frames) + 1, page.size[1], page.size[0]))
            if page.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                page = page.convert("L")
            frames.append(np.asarray(page))
    return np.stack(frames)  # (pages, H, W)


def natural_key(path: Path) -> list:
    """Sort key that orders embedded numbers by value: `bscan_2` < `bscan_10`."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


# --- helpers ----------------------------------------------------------------------------------------------------


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_nifti(head: bytes) -> bool:
    nifti1 = len(head) >= 348 and head[344:347] in (b"n+1", b"ni1")  # magic at the end of the 348-byte header
    nifti2 = head[4:7] in (b"n+2", b"ni2")  # NIfTI-2 puts it right after sizeof_hdr
    return nifti1 or nifti2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


def _checked(path: Path, volume: OctVolume) -> OctVolume:
    array = volume.array
    if array.dtype != np.uint8 or array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{path}: reader returned {array.dtype} {array.shape}, not a non-empty uint8 volume")
    return volume


def _vendor(fmt: str):
    def read(path: Path) -> OctVolume:
        return read_vendor(path, fmt)

    return read


def _dicom(path: Path) -> OctVolume:
    return read_dicom_opt(path)


_READERS = {
    "duke-mat": _read_duke_mat, "duke-mat-v73": _read_duke_mat_v73, "dicom": _dicom, "nifti": _read_nifti,
    "npy": _read_npy, "npz": _read_npz, "image-folder": _read_image_folder, "image": _read_image,
    **{fmt: _vendor(fmt) for fmt in ("heidelberg-e2e", "heidelberg-vol", "topcon-fds", "topcon-fda",
                                     "bioptigen-oct")},
}
