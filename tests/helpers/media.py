"""Image folders and MJPG clips made of generated frames, for the CLI and output tests."""
import cv2

from helpers.tiny_pipeline import make_frame


def image_folder(folder, n=3):
    folder.mkdir()
    for i in range(1, n + 1):
        cv2.imwrite(str(folder / f"{i}.png"), make_frame(i))
    return folder


def write_video(path, n):
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    assert writer.isOpened()
    for i in range(n):
        writer.write(make_frame(i))
    writer.release()
    return path
