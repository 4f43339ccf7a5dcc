#!/usr/bin/env python3
"""ConvNeXtPose Live: real-time 3D human pose from a camera, video, image, folder or stream.

    python run_demo.py --input 0                      # webcam, live window
    python run_demo.py --input clip.mp4 --output out.mp4 --export joints.json --no-display
    python run_demo.py batch videos/ --out-dir results/   # many videos (app/batch.py)

`python run_demo.py --help` and `python run_demo.py batch --help` list every option.
"""
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["batch"]:
        from app.batch import main
        sys.exit(main(sys.argv[2:]))
    from app.cli import main
    sys.exit(main(process_exits_after=True))
