"""Contact-origin icons: exactly 22×22, content-checked, re-encoded, served only to signed-in staff."""

import io

from PIL import Image
from sqlalchemy import select

from app.clients.models import ContactOrigin
from app.extensions import db


def png(size, extra=b""):
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue() + extra


def add_origin(c, label, data, filename="icon.png"):
    return c.post("/contactoriginmodelview/add", data={
        "label": label, "active": "y", "icon_url": "", "icon_upload": (io.BytesIO(data), filename)},
        content_type="multipart/form-data")


def test_icon_must_be_22_by_22_and_is_reencoded(app, world, web):
    c = web("admin")
    add_origin(c, "Too big", png((64, 64)))
    add_origin(c, "Not an image", b"<html><script>alert(1)</script></html>", "evil.png")
    add_origin(c, "Good", png((22, 22), extra=b"<script>alert(1)</script>"))
    with app.app_context():
        labels = {o.label: o for o in db.session.scalars(select(ContactOrigin))}
        assert "Too big" not in labels and "Not an image" not in labels
        good = labels["Good"]
        assert good.icon_file and good.icon_file.endswith(".png")
        pk = good.id
    r = c.get(f"/contactoriginmodelview/icon/{pk}")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert b"<script" not in r.data  # appended bytes did not survive re-encoding
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(r.data)).size == (22, 22)
    assert app.test_client().get(f"/contactoriginmodelview/icon/{pk}").status_code == 302  # anonymous: login
    assert c.get("/contactoriginmodelview/icon/999999").status_code == 404
