"""Contact-origin icons (CL-SET-1): uploaded images exactly 22×22 px, re-encoded, stored privately."""

import io
import os
import uuid

from flask import current_app
from flask_babel import lazy_gettext as _l
from PIL import Image

ICON_SIZE = (22, 22)
MAX_BYTES = 64 * 1024


def icon_folder():
    folder = os.path.join(current_app.config.get("PRIVATE_UPLOAD_FOLDER") or
                          os.path.join(os.path.dirname(current_app.root_path), "instance", "uploads"), "icons")
    os.makedirs(folder, exist_ok=True)
    return folder


def store_icon(stream):
    """Check and re-encode an uploaded icon; returns the stored file name or raises ValueError."""
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(_l("The icon file is too large (at most 64 KB)."))
    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "GIF", "WEBP"]) as img:
            img.load()
            if img.size != ICON_SIZE:
                raise ValueError(_l("The icon must be exactly 22×22 pixels (this one is %(w)d×%(h)d).",
                                    w=img.size[0], h=img.size[1]))
            # Rebuild from pixel data: nothing but pixels survives (no metadata, no appended bytes).
            clean = Image.frombytes("RGBA", img.size, img.convert("RGBA").tobytes())
    except (OSError, Image.DecompressionBombError):
        raise ValueError(_l("The icon must be a PNG, JPEG, GIF or WebP image."))
    name = f"{uuid.uuid4().hex}.png"
    clean.save(os.path.join(icon_folder(), name), format="PNG")
    return name


def icon_path(name):
    if not name or "/" in name or "\\" in name or not name.endswith(".png"):
        return None
    path = os.path.join(icon_folder(), name)
    return path if os.path.isfile(path) else None
