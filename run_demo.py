#!/usr/bin/env python3
"""ConvNeXtPose Live: real-time 3D human pose from a camera, video, image, folder or stream.

    python run_demo.py --input 0                      # webcam, live window
    python run_demo.py --input clip.mp4 --output out.mp4 --export joints.json --no-display

`python run_demo.py --help` lists every option.
"""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
