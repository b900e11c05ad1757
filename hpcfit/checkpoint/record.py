"""What a checkpoint holds, and the checks that make a resume safe: a hash of the options that change
the answer and a fingerprint of the data. Pure numpy and JSON: no h5py, no MPI."""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from ..errors import InputError

#: Options that do not change the answer: excluded from the options hash.
# Limits decide where a fit stops, not the path it takes: a fit stopped on one resumes with another.
NOT_IN_ANSWER = ("verbose", "max_time", "max_iterations", "max_nfev", "checkpoint", "checkpoint_every",
                 "checkpoint_seconds", "resume", "resume_force")
#: Columns of the per-rank table ``/ranks``.
RANK_COLUMNS = ("rank", "first_chunk", "n_chunks", "first_point", "n_points", "cursor")
#: Global chunks whose checksums make the data fingerprint (evenly spaced, first and last included).
FINGERPRINT_CHUNKS = 8


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: the solver's state at an iteration boundary and what it was computed from.

    ``arrays`` and ``values`` are the phase's state (numpy arrays; JSON-able scalars, lists and
    dicts); ``ranks`` is one row per rank (:data:`RANK_COLUMNS`).
    """

    phase: str                       # "warmup" or "trust_region"
    iteration: int                   # warm-up step, or LM iteration
    arrays: dict[str, np.ndarray]
    values: dict[str, Any]
    history: np.ndarray              # (iterations so far, 9): IterationRecord rows
    options: dict[str, Any]          # the options that change the answer
    fingerprint: dict[str, Any]
    ranks: np.ndarray                # (n_ranks, len(RANK_COLUMNS)) int64
    version: str
    extra: dict[str, Any] = field(default_factory=dict)   # written_unix, writer (not checksummed)

    @property
    def options_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.options).encode()).hexdigest()

    def checksum(self) -> int:
        """CRC32 over everything but ``extra``: a torn or edited file fails it."""
        crc = zlib.crc32(canonical_json([self.phase, self.iteration, self.values, self.options, self.fingerprint,
                                         self.version]).encode())
        for name in sorted(self.arrays):
            crc = zlib.crc32(name.encode(), crc)
            crc = zlib.crc32(np.ascontiguousarray(self.arrays[name], dtype=np.float64).tobytes(), crc)
        crc = zlib.crc32(np.ascontiguousarray(self.history, dtype=np.float64).tobytes(), crc)
        return zlib.crc32(np.ascontiguousarray(self.ranks, dtype=np.int64).tobytes(), crc)


def canonical_json(value) -> str:
    """JSON with sorted keys; floats as repr, so they read back bit for bit (NaN and Inf included)."""
    return json.dumps(value, sort_keys=True, allow_nan=True)


def stored_form(value: Any) -> Any:
    """An option as a checkpoint stores it and reads it back: JSON's values (tuples become lists,
    dataclasses dicts, numpy scalars and arrays Python numbers and lists; floats exact). Options are
    compared in this form only, so a tuple given now equals the list read from the file."""
    def plain(v):
        if is_dataclass(v) and not isinstance(v, type):
            return {k: plain(x) for k, x in asdict(v).items()}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.ndarray):
            return [plain(x) for x in v.tolist()]
        if isinstance(v, np.generic):
            return v.item()
        return v
    return json.loads(canonical_json(plain(value)))


def same_stored(a: Any, b: Any) -> bool:
    """Whether two options are equal in :func:`stored_form` (NaN equals NaN, -0.0 is not 0.0)."""
    return canonical_json(stored_form(a)) == canonical_json(stored_form(b))


def answer_options(opts, *, p0, lower, upper, absolute_sigma: bool, model, model_hash: str) -> dict[str, Any]:
    """The options, start and bounds that change the answer, in :func:`stored_form` (floats exact);
    the model by its name (for the message) and by what it computes (``model_hash``, for the
    comparison)."""
    record = {f.name: getattr(opts, f.name) for f in fields(opts) if f.name not in NOT_IN_ANSWER}
    record.update(p0=[float(v) for v in p0], lower=[float(v) for v in lower], upper=[float(v) for v in upper],
                  absolute_sigma=bool(absolute_sigma),
                  model=getattr(model, "__qualname__", None) or type(model).__name__, model_hash=model_hash)
    return stored_form(record)


#: A value in a refusal is cut to about this many characters (a start of 23 values is thousands).
SHOWN_CHARACTERS = 200


def _cut(value: Any) -> str:
    text = canonical_json(stored_form(value)) if not isinstance(value, str) else repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS - 5] + " …" + text[-3:]


def fingerprint_chunks(n_chunks: int) -> list[int]:
    """The global chunks checksummed for the fingerprint: the same for any rank count."""
    return sorted({int(i) for i in np.linspace(0, n_chunks - 1, min(FINGERPRINT_CHUNKS, n_chunks)).round()})


def compare(saved: Checkpoint, options: dict, fingerprint: dict, where: str) -> None:
    """Raise InputError naming every option and every data property that differs from the checkpoint."""
    absent = "(absent)"
    problems = [f"option `{k}`: checkpoint {_cut(saved.options.get(k, absent))}, now {_cut(options.get(k, absent))}"
                for k in sorted(set(saved.options) | set(options))
                if k != "model_hash" and not same_stored(saved.options.get(k, absent), options.get(k, absent))]
    if saved.options.get("model_hash") != options.get("model_hash"):
        problems.append(f"the model: {options.get('model')!r} now computes something else than the checkpoint's "
                        f"{saved.options.get('model')!r} (its code, constants or configuration changed)")
    for key in ("n_points", "x_shape", "chunk_size", "n_chunks"):
        if not same_stored(saved.fingerprint.get(key), fingerprint.get(key)):
            problems.append(f"data {key}: checkpoint {saved.fingerprint.get(key)!r}, now {fingerprint.get(key)!r}")
    if not problems:
        before, now = saved.fingerprint.get("checksums", {}), fingerprint.get("checksums", {})
        changed = [int(c) for c in sorted(set(before) | set(now), key=int) if before.get(c) != now.get(c)]
        if changed:
            problems.append(f"data values: the checksums of chunk(s) {changed} differ (the data changed)")
    if problems:
        raise InputError(f"resume refused: {where} was written by a fit with different options or data, so "
                         "continuing would not give the answer of either. Differences: " + "; ".join(problems) +
                         ". Pass resume_force=True to resume anyway.")
