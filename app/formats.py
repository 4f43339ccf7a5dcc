"""File extensions, in one place: what this program can read (OpenCV and its FFmpeg decode
far more than it can write) and what it writes. Reading and writing get different names, since
".mkv" is a video it reads but not one it writes."""
from __future__ import annotations

READABLE_IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic",
})
READABLE_VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
    ".mts", ".m2ts", ".3gp", ".ogv", ".gif", ".mjpeg", ".mjpg", ".h264", ".264", ".hevc",
})

# What the outputs write (app/outputs/): H.264 or mp4v in MP4/MOV, MJPG in AVI; still images
# through OpenCV; joint exports; matplotlib figures for --plot.
WRITABLE_VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi")
WRITABLE_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXPORT_EXTENSIONS = (".json", ".csv", ".npz")
PLOT_EXTENSIONS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
