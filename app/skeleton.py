"""The 18-joint Human3.6M skeleton that ConvNeXtPose predicts (Thorax added by the authors)."""

JOINT_NAMES = (
    "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck",
    "Nose", "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
    "Thorax",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}
ROOT = JOINT_INDEX["Pelvis"]

BONES = (
    (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6),
)
# (right, left) pairs, used for flipping and for colouring by side.
FLIP_PAIRS = ((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13))

RIGHT_JOINTS = frozenset(r for r, _ in FLIP_PAIRS)
LEFT_JOINTS = frozenset(l for _, l in FLIP_PAIRS)


def bone_side(bone):
    """'right', 'left' or 'centre' for a bone, by the joints it touches (other than the root)."""
    joints = set(bone) - {ROOT}
    if joints & RIGHT_JOINTS:
        return "right"
    if joints & LEFT_JOINTS:
        return "left"
    return "centre"


# BGR colours, so OpenCV drawing can use them directly.
SIDE_COLOURS_BGR = {"right": (60, 76, 231), "left": (219, 152, 52), "centre": (113, 204, 46)}

# Distinct BGR colours per track id (cycled), chosen away from the three side colours above so
# a person's colour is never mistaken for a side.
TRACK_COLOURS_BGR = (
    (0, 165, 255), (255, 0, 255), (0, 215, 255), (255, 255, 0), (180, 105, 255),
    (160, 80, 200), (150, 150, 0), (200, 200, 200),
)


def track_colour(track_id):
    return TRACK_COLOURS_BGR[track_id % len(TRACK_COLOURS_BGR)]
