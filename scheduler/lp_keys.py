"""Stable keys for the LP's columns and rows, so a basis can follow them from one plan to the next.

A key is kind (8 bits) | entity (24 bits: a session's number, a phase, a segment) | step key (32 bits,
e.g. the step's end time in epoch seconds).
"""

from __future__ import annotations

import numpy as np

from youxu.scheduler.lp_model import LpGrid, LpSessions


def key(kind: int, entity: np.ndarray | int, step: np.ndarray | int) -> np.ndarray:
    """kind (8 bits) | entity (24 bits) | step key (32 bits)."""
    ent = np.asarray(entity, dtype=np.int64)
    st = np.asarray(step, dtype=np.int64)
    return np.atleast_1d((np.int64(kind) << np.int64(56)) | (ent << np.int64(32)) | st)


def column_keys(g: LpGrid, s: LpSessions, sess: np.ndarray, step: np.ndarray, y_pos: np.ndarray,
                nseg: int) -> np.ndarray:
    """The keys of build_lp's columns, block by block in its column order."""
    uid = session_numbers(s)
    sk = step_keys(g)
    h, tt = g.horizon, np.arange(g.horizon)
    ph, tph = np.repeat(np.arange(3), h), np.tile(tt, 3)
    return np.concatenate([
        key(1, uid[sess], sk[step]), key(2, uid[sess[y_pos]], sk[step[y_pos]]),
        key(3, uid[sess[y_pos]], sk[step[y_pos]]), key(4, uid, 0),
        key(5, ph, sk[tph]), key(6, ph, sk[tph]), key(7, 0, sk),
        key(8, np.tile(np.arange(nseg), h), sk[np.repeat(tt, nseg)]),
        key(9, 0, sk), key(10, 0, sk), key(11, 0, 0), key(12, np.arange(2), 0),
        key(13, 0, sk), key(14, 0, sk), key(15, 0, sk), key(16, ph, sk[tph]),
    ])


def session_numbers(s: LpSessions) -> np.ndarray:
    return np.arange(s.k, dtype=np.int64) if s.uid is None else np.asarray(s.uid, dtype=np.int64)


def step_keys(g: LpGrid) -> np.ndarray:
    return np.arange(g.horizon, dtype=np.int64) if g.step_key is None else np.asarray(g.step_key, dtype=np.int64)
