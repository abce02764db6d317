"""Who is who: a `track` per face that links it across the frames of one video, and an `identity` that groups faces
across the whole run (a folder of photos, several videos) by their face descriptor.

Descriptors are the 128-D output of face-api's FaceRecognitionNet (the converted `face_recognition` prior), a port of
dlib's ResNet face-recognition model. dlib documents that two descriptors closer than 0.6 (Euclidean) are the same
person (dlib's `face_recognition_model_v1` / `dnn_face_recognition_ex.cpp`: 99.38 % on the LFW benchmark with that
threshold), and face-api.js's `FaceMatcher` uses the same 0.6 default: `SAME_PERSON_DISTANCE`.

Frame to frame, the faces of the new frame are assigned to the live tracks of the same video by
`scipy.optimize.linear_sum_assignment` on a cost that adds the descriptor distance (in units of the threshold) and the
boxes' non-overlap `1 - IoU`; a pair is allowed only when the descriptors are within the threshold, so two people who
cross (their boxes overlapping) keep their tracks. A face left unassigned starts a track; a track unseen for
`max_gap` analysed frames ends. A new track takes the identity whose mean descriptor is nearest (within the
threshold), or a new one; its faces keep that identity.

The whole state is plain JSON (`state_dict`), so a resumed run continues exactly where the crash left it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

SAME_PERSON_DISTANCE = 0.6


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of boxes `(n, 4)` and `(m, 4)` (x0, y0, x1, y1) -> `(n, m)`."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=-1)
    area = lambda boxes: np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=-1)  # noqa: E731
    union = area(first)[:, None] + area(second)[None, :] - intersection
    return intersection / np.maximum(union, 1e-12)


@dataclass
class _Track:
    track: int
    identity: int
    box: list[float]
    descriptor: list[float]  # mean over the track's faces
    faces: int
    last_seen: int  # analysed-frame counter of the track's video


@dataclass
class FaceTracker:
    """Assigns `track` and `identity` to the faces of consecutive frames (see the module docstring).

    threshold: descriptor distance below which two faces may be the same person.
    max_gap: a track unseen for this many analysed frames of its video is ended.
    """

    threshold: float = SAME_PERSON_DISTANCE
    max_gap: int = 30
    source: str | None = None
    frames_seen: int = 0
    next_track: int = 0
    tracks: list[_Track] = field(default_factory=list)
    identities: list[list[float]] = field(default_factory=list)  # mean descriptor per identity
    identity_faces: list[int] = field(default_factory=list)

    def assign(self, source: str, boxes: np.ndarray, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image or frame: its faces' `boxes (faces, 4)` and `descriptors (faces, 128)` -> (track, identity),
        each int64 `(faces,)`. Frames of one source must come in order; a new source starts new tracks."""
        if source != self.source:
            self.source, self.frames_seen, self.next_track, self.tracks = source, 0, 0, []
        self.frames_seen += 1
        self.tracks = [track for track in self.tracks if self.frames_seen - track.last_seen <= self.max_gap]
        tracks = np.full(len(boxes), -1, dtype=np.int64)
        identities = np.full(len(boxes), -1, dtype=np.int64)
        matched = self._match(boxes, descriptors)
        for face in range(len(boxes)):
            track = matched.get(face)
            if track is None:
                track = _Track(self.next_track, self._identity_of(descriptors[face]), boxes[face].tolist(),
                               descriptors[face].tolist(), 0, self.frames_seen)
                self.next_track += 1
                self.tracks.append(track)
            count = track.faces + 1
            track.descriptor = ((np.asarray(track.descriptor) * track.faces + descriptors[face]) / count).tolist()
            track.faces, track.box, track.last_seen = count, boxes[face].tolist(), self.frames_seen
            self._update_identity(track.identity, descriptors[face])
            tracks[face], identities[face] = track.track, track.identity
        return tracks, identities

    def _match(self, boxes: np.ndarray, descriptors: np.ndarray) -> dict[int, _Track]:
        """face index -> the live track it continues."""
        if not self.tracks or not len(boxes):
            return {}
        known = np.asarray([track.descriptor for track in self.tracks])
        distance = np.linalg.norm(descriptors[:, None, :] - known[None, :, :], axis=-1)
        overlap = box_iou(boxes, np.asarray([track.box for track in self.tracks]))
        cost = distance / self.threshold + (1.0 - overlap)
        allowed = distance < self.threshold
        cost[~allowed] = 1e6  # never chosen over a new track
        faces, chosen = linear_sum_assignment(cost)
        return {int(face): self.tracks[track] for face, track in zip(faces, chosen) if allowed[face, track]}

    def _identity_of(self, descriptor: np.ndarray) -> int:
        if self.identities:
            distance = np.linalg.norm(np.asarray(self.identities) - descriptor, axis=1)
            nearest = int(distance.argmin())
            if distance[nearest] < self.threshold:
                return nearest
        self.identities.append(descriptor.tolist())
        self.identity_faces.append(0)
        return len(self.identities) - 1

    def _update_identity(self, identity: int, descriptor: np.ndarray) -> None:
        count = self.identity_faces[identity] + 1
        mean = (np.asarray(self.identities[identity]) * (count - 1) + descriptor) / count
        self.identities[identity], self.identity_faces[identity] = mean.tolist(), count

    def state_dict(self) -> dict[str, Any]:
        """Everything `load_state_dict` needs to continue, as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FaceTracker:
        state = dict(state)
        state["tracks"] = [_Track(**track) for track in state["tracks"]]
        return cls(**state)


__all__ = ["SAME_PERSON_DISTANCE", "FaceTracker", "box_iou"]
