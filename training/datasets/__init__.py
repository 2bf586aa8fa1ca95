"""Real-data adapters: (image, X) pair datasets and evaluation sets from files, tar shards
and ROS 2 bags, one module per adapter, registered with ``training.data`` when this package
is imported. Layouts are documented in docs/training.md; every kind is tested on a small
fake copy of its layout (tests/test_datasets.py).

Pair kinds (``data.train.<modality>: {kind: ..., ...}``):

* ``folder``: ``<root>/<image_dir>/**/NAME.ext`` + ``<root>/<x_dir>/**/NAME.ext``, matched by
  relative path without extension (LLVIP's ``visible/`` + ``infrared/``);
* ``manifest``: a CSV/TSV file with an image path column and an X path column;
* ``webdataset``: tar shards of ``KEY.jpg`` + ``KEY.wav|.flac|.depth.png|.npy ...`` members,
  read with :mod:`tarfile` (no webdataset dependency), one index pass, then random access;
* ``rosbag``: a ROS 2 bag (``rosbags``, no ROS install): camera frames paired with another
  topic by timestamp, nearest message within ``tolerance`` for frames (depth, thermal), the
  ``window`` of messages ending at the frame for streams (audio chunks, IMU);
* ``llvip``, ``nyu_depth_v2``, ``sunrgbd``: those data sets' own layouts.

Evaluation kinds (``data.eval``): the same kinds with a ``modality`` key (labelled where the
layout has labels: ``manifest`` with ``label_column``, ``nyu_depth_v2`` and ``sunrgbd`` scene
types; retrieval only otherwise) and ``esc50`` (audio -> text zero-shot, ESC-50's 50 classes).

Every pair kind takes the augmentation keys ``views`` (default 1; ``null`` = unbounded, no
hub-feature cache), ``crop: [min, max]`` (area fraction; views >= 1; one box cuts the image
and a depth/thermal map together), and ``freq_mask`` (audio: mel bins); odd views are
mirrored. A file that cannot be read raises an error naming it.
"""

from __future__ import annotations

from . import esc50, folder, manifest, nyu, rosbag, sunrgbd, webdataset
from .common import Augment, PairEval, RawPairs
from .rosbag import typestore
from .sunrgbd import sunrgbd_depth_mm

__all__ = ["Augment", "PairEval", "RawPairs", "esc50", "folder", "manifest", "nyu", "rosbag",
           "sunrgbd", "sunrgbd_depth_mm", "typestore", "webdataset"]
