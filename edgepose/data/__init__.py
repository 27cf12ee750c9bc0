"""Data: frame sources (camera, video, folder, stream), COCO io, synthetic images."""
