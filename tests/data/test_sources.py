"""Frame sources: folders with broken files, videos (complete and truncated), single images,
missing paths and cameras that cannot be opened."""
import logging

import cv2
import numpy as np
import pytest

from edgepose.data.sources import open_source
from edgepose.errors import SourceError, UsageError


def _frame(i, h=48, w=64):
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _video_frame(i, h=48, w=64):
    """Smooth frames (noise compresses badly): a gradient brightened by 10 per frame."""
    x = np.linspace(0, 60, w)[None, :, None] + np.linspace(0, 40, h)[:, None, None]
    return np.clip(x + 10 * i + np.array([0, 20, 40]), 0, 255).astype(np.uint8)


def _write_video(path, n=20, fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(_video_frame(i))
    writer.release()
    return path


def test_image_folder_skips_and_counts_unreadable(tmp_path, caplog):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), _frame(i))
    (tmp_path / "001b.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    src = open_source(source=str(tmp_path))
    assert src.kind == "folder" and src.total == 4
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        items = list(src)
    assert [name for _, _, name in items] == ["000.png", "001.png", "002.png"]
    assert [fid for fid, _, _ in items] == [0, 1, 2]
    np.testing.assert_array_equal(items[2][1], _frame(2))  # png is lossless
    assert src.frames_read == 3 and src.skipped == 1 and not src.stopped_early
    assert any("001b.jpg" in r.getMessage() for r in caplog.records)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        open_source(source=str(tmp_path))


def test_video_frames_read(tmp_path):
    path = _write_video(tmp_path / "clip.avi", n=20, fps=10.0)
    src = open_source(source=str(path))
    assert src.kind == "video" and src.total == 20 and src.size == (64, 48)
    assert src.fps == pytest.approx(10.0)
    frames = list(src)
    assert len(frames) == 20 and src.frames_read == 20 and not src.stopped_early
    assert frames[0][1].shape == (48, 64, 3) and frames[-1][0] == 19
    # MJPG is lossy; each decoded frame is still close to the one written at its index
    for fid, frame, _ in frames:
        assert np.abs(frame.astype(int) - _video_frame(fid).astype(int)).mean() < 3


def test_truncated_video_stops_cleanly(tmp_path, caplog):
    full = _write_video(tmp_path / "full.avi", n=20)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = open_source(source=str(cut))
    assert src.total == 20  # the header still promises 20 frames
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        frames = list(src)  # no exception
    assert 0 < src.frames_read < 20 and len(frames) == src.frames_read
    assert src.stopped_early
    assert any("stopped after" in r.getMessage() for r in caplog.records)


def test_stop_ends_iteration(tmp_path):
    src = open_source(source=str(_write_video(tmp_path / "clip.avi", n=10)))
    seen = []
    for fid, _, _ in src:
        seen.append(fid)
        if fid == 3:
            src.stop()
    assert seen == [0, 1, 2, 3] and src.frames_read == 4


def test_single_image_and_bad_paths(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _frame(7))
    items = list(open_source(source=str(tmp_path / "a.png")))
    assert len(items) == 1 and items[0][2] == "a.png"
    np.testing.assert_array_equal(items[0][1], _frame(7))
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(SourceError, match="cannot read image"):
        open_source(source=str(tmp_path / "broken.jpg"))
    with pytest.raises(SourceError, match="no such file"):
        open_source(source=str(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(source=str(tmp_path / "junk.mp4"))
    with pytest.raises(UsageError, match="exactly one"):
        open_source()
    with pytest.raises(UsageError, match="exactly one"):
        open_source(camera=0, source="x.mp4")


def test_camera_that_cannot_open_names_the_index():
    with pytest.raises(SourceError) as info:
        open_source(camera=97)
    assert "camera 97" in str(info.value) and "v4l2-ctl --list-devices" in str(info.value)
    assert info.value.exit_code == 2
