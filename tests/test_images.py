"""The one image decoder (:mod:`augret.images`): its errors, and a decompression bomb refused on
every path that decodes images (enhancement, the retriever, the server, the viewer)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from augret.errors import BadImage, ImageTooLarge, UnsupportedImage
from augret.images import BOMB_PIXELS, decode_image, read_image_file
from helpers.images import bomb_png, png

Image = pytest.importorskip("PIL.Image")

# PIL refuses the first by itself; the second (81 M pixels) is under PIL's own limits
# (89 M pixels warn, 179 M fail) and over ours: only the header check refuses it.
BOMBS = {"pil-bomb": 100_000, "over-our-limit": 9_000}


@pytest.fixture(params=sorted(BOMBS))
def bomb(request, tmp_path: Path) -> Path:
    side = BOMBS[request.param]
    assert side * side > BOMB_PIXELS
    path = tmp_path / f"{request.param}.png"
    path.write_bytes(bomb_png(side))
    return path


def test_decodes_the_first_frame_with_its_mode() -> None:
    frames = [Image.new("P", (16, 12), i) for i in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    img = decode_image(buf.getvalue())
    assert img.size == (16, 12) and img.mode == "P" and img.tell() == 0
    assert decode_image(png(), formats=("PNG",)).mode == "RGB"


def test_every_failure_is_a_bad_image_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"", name="x.png")
    with pytest.raises(BadImage, match=r"corrupt or truncated image x\.png"):
        decode_image(png()[:60], name="x.png")
    with pytest.raises(UnsupportedImage, match=r"not a recognised image format: x$"):
        decode_image(b"not an image", name="x")
    with pytest.raises(UnsupportedImage, match=r"x \(accepted: PNG, JPEG\)"):
        decode_image(png(fmt="TIFF"), formats=("PNG", "JPEG"), name="x")
    with pytest.raises(ImageTooLarge, match=r"\(5000x5000 pixels, at most 1,000,000\): x"):
        decode_image(bomb_png(5000), max_pixels=1_000_000, name="x")
    with pytest.raises(BadImage, match="image not found"):
        read_image_file(tmp_path / "absent.png")
    with pytest.raises(BadImage, match="directory"):
        read_image_file(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadImage, match="empty"):
        read_image_file(tmp_path / "empty.png")
    assert UnsupportedImage.http_status == 415 and ImageTooLarge.http_status == 413
    assert BadImage.http_status == 422


def test_the_decoder_refuses_a_bomb(bomb: Path) -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(bomb.read_bytes())


def test_enhancement_refuses_a_bomb(bomb: Path) -> None:
    from augret.enhance.images import load_image

    with pytest.raises(ImageTooLarge, match=bomb.name):
        load_image(read_image_file(bomb), name=str(bomb))


def test_the_retriever_refuses_a_bomb(bomb: Path, tiny_encoder) -> None:
    from augret.encode import Item
    from augret.encode.batch import prepare

    prepared = prepare(Item(None, str(bomb)), tiny_encoder.processor)
    assert prepared.pixels is None
    assert prepared.error is not None and str(bomb) in prepared.error
    assert "decompression bomb" in prepared.error or "too large" in prepared.error


def test_the_server_refuses_a_bomb(bomb: Path, shapes_indexes) -> None:
    from augret.serve import AdhocQuery, Searcher

    searcher = Searcher.open(shapes_indexes.bm25)
    for image in (bomb.read_bytes(), bomb):
        with pytest.raises(ImageTooLarge, match="query image"):
            searcher.prepare(AdhocQuery(image=image))


def test_the_viewer_omits_a_bomb(bomb: Path) -> None:
    from augret.experiment.viewer import _Thumbs

    thumbs = _Thumbs(px=32, max_bytes=10_000)
    assert thumbs(bomb) is None and thumbs.omitted == 1
    ok = bomb.with_name("ok.png")
    ok.write_bytes(png())
    assert thumbs(ok).startswith("data:image/jpeg;base64,") and thumbs.embedded == 1
