"""RVL, the lossless depth codec of compressed_depth_image_transport's ``rvl`` format.

RVL (A. D. Wilson, "Fast Lossless Depth Image Compression", ISS 2017) codes a row-major
uint16 image as alternating runs: the number of zeros, the number of non-zeros, then each
non-zero value as the zigzag-coded difference from the previous non-zero value (which starts
at 0 and carries over between runs). Every integer is a variable-length code of 3-bit groups,
least significant first, one per nibble whose bit 3 says "more follows"; nibbles fill 32-bit
words from the most significant end, and the words are stored little-endian. The last word is
padded with zero nibbles. (compressed_depth_image_transport prepends cols and rows as two
little-endian uint32; that framing is the caller's, see ``imagebind_ros.decode``.)

Both directions are vectorised with numpy: the plugin decodes in C++ at camera rate, and a
per-pixel Python loop would take about a second for one 640x480 frame. The only sequential
step left is finding where each run's header lies, done by pointer doubling in O(n log runs).
"""

from __future__ import annotations

import array

import numpy as np

# A value of up to 32 bits needs at most 11 nibbles; a longer code is corrupt data.
_MAX_NIBBLES = 11
# Runs followed by the Python loop before switching to pointer doubling (see _run_headers).
_LOOP_RUNS = 16384


class RvlError(ValueError):
    """A byte string that is not a valid RVL code of the requested number of pixels."""


def _nibbles(data: bytes | memoryview) -> np.ndarray:
    """RVL bytes -> nibbles in code order (uint8): little-endian words, high nibble first."""
    n = len(data) // 4 * 4
    b = np.frombuffer(data, np.uint8, count=n).reshape(-1, 4)[:, ::-1].reshape(-1)
    nib = np.empty(2 * b.size, np.uint8)
    nib[0::2] = b >> 4
    nib[1::2] = b & 0xF
    return nib


def _values(nib: np.ndarray) -> np.ndarray:
    """Nibbles -> the variable-length integers they code (trailing padding dropped)."""
    ends = np.flatnonzero(nib < 8)  # bit 3 clear: the last nibble of a value
    if ends.size == 0:
        return np.zeros(0, np.int64)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    longest = int(lengths.max())
    if longest > _MAX_NIBBLES:
        raise RvlError(f"RVL code has a value of {longest} nibbles (at most "
                       f"{_MAX_NIBBLES}): corrupt data")
    values = (nib[starts] & 7).astype(np.int64)
    longer = np.flatnonzero(lengths > 1)
    j = 1
    while longer.size:  # one pass per nibble position, over the values that long only
        values[longer] |= (nib[starts[longer] + j] & 7).astype(np.int64) << (3 * j)
        j += 1
        longer = longer[lengths[longer] > j]
    return values


def _run_headers(values: np.ndarray) -> np.ndarray:
    """Indices in ``values`` of each run's zero count (the next value is its non-zero count).

    Header k+1 is at h + 2 + values[h + 1] for header h: a pointer chase. A Python loop
    follows it fast for the usual few thousand runs; past ``_LOOP_RUNS`` (a speckled or
    hostile image) the rest is found by doubling (jump tables of 1, 2, 4, ... runs), which
    costs O(n log runs) whatever the data.
    """
    n = values.size
    flat = array.array("q", values.astype(np.int64).tobytes())
    heads: list[int] = []
    add = heads.append
    h = 0
    for _ in range(_LOOP_RUNS):
        if h + 1 >= n:
            break
        add(h)
        h += 2 + flat[h + 1]
    found = np.array(heads, np.int64)
    if h + 1 >= n:
        return found
    tail = values[h:]
    m = tail.size
    jump = np.full(m + 1, m, np.int64)  # jump[i]: the next header if i is one; m = past end
    jump[: m - 1] = np.minimum(np.arange(2, m + 1) + tail[1:], m)
    orbit = np.zeros(1, np.int64)
    while orbit[-1] < m:
        orbit = np.concatenate([orbit, jump[orbit]])
        jump = jump[jump]
    return np.concatenate([found, h + orbit[orbit + 1 < m]])


def _max_code_bytes(num_pixels: int) -> int:
    """The longest possible code: 6 nibbles (3 bytes) per pixel at worst, plus one run
    header and the padding of the last word (the plugin allocates 3 bytes per pixel)."""
    return 3 * num_pixels + 16


def decode(data: bytes | memoryview, num_pixels: int) -> np.ndarray:
    """RVL bytes -> flat uint16 array of ``num_pixels``; ``RvlError`` if the code is cut
    short, runs past ``num_pixels``, or overflows."""
    if num_pixels <= 0:
        raise RvlError(f"RVL image must have pixels, got {num_pixels}")
    if len(data) > _max_code_bytes(num_pixels):
        raise RvlError(f"{len(data)} bytes of RVL code for {num_pixels} pixels: more than "
                       f"any encoder writes ({_max_code_bytes(num_pixels)})")
    values = _values(_nibbles(data))
    heads = _run_headers(values)
    heads = heads[heads + 1 < values.size]  # a header cut off by the end is padding
    zeros, nonzeros = values[heads], values[heads + 1]
    ends = np.cumsum(zeros + nonzeros)
    last = int(np.searchsorted(ends, num_pixels))  # the run that completes the image
    if last >= heads.size or ends[last] != num_pixels:
        total = int(ends[last]) if last < heads.size else int(ends[-1]) if ends.size else 0
        raise RvlError(f"RVL runs cover {total} pixels where the image has {num_pixels}"
                       + (" (truncated data)" if last >= heads.size else ""))
    heads, nonzeros = heads[: last + 1], nonzeros[: last + 1]
    stop = int(heads[-1] + 2 + nonzeros[-1])  # one past the image's last value
    if stop > values.size:
        raise RvlError("RVL code ends inside a run of values (truncated data)")
    is_value = np.ones(stop, bool)
    is_value[heads] = False
    is_value[heads + 1] = False
    zig = values[:stop][is_value]
    delta = (zig >> 1) ^ -(zig & 1)
    lengths = np.stack([zeros[: last + 1], nonzeros], axis=1).reshape(-1)
    is_nonzero = np.repeat(np.tile(np.array([False, True]), last + 1), lengths)
    out = np.zeros(num_pixels, np.uint16)
    out[is_nonzero] = (np.cumsum(delta) & 0xFFFF).astype(np.uint16)
    return out


def encode(pixels: np.ndarray) -> bytes:
    """A uint16 image (any shape, row-major) -> RVL bytes, as the plugin's CompressRVL."""
    p = np.ascontiguousarray(pixels, np.uint16).reshape(-1).astype(np.int64)
    if p.size == 0:
        raise RvlError("cannot RVL-encode an empty image")
    nz = p != 0
    edges = np.flatnonzero(np.diff(nz.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [p.size]])
    lengths = np.diff(bounds)
    is_nz_run = nz[bounds[:-1]]
    # Runs alternate; pad to (zeros, non-zeros) pairs: a leading empty zero run if the image
    # starts with a measurement, a trailing empty non-zero run if it ends with zeros, exactly
    # as the encoder's loop emits them.
    pairs = np.concatenate([[0] if is_nz_run[0] else [], lengths,
                            [] if is_nz_run[-1] else [0]]).astype(np.int64)
    zeros, nonzeros = pairs[0::2], pairs[1::2]
    vals = p[nz]
    delta = np.diff(vals, prepend=0)
    zig = (delta << 1) ^ (delta >> 63)  # zigzag; |delta| < 2**16 so int64 is exact
    # Interleave: [zeros_k, nonzeros_k, zig of run k ...] for every run k.
    n_runs = zeros.size
    heads = 2 * np.arange(n_runs, dtype=np.int64) + np.cumsum(nonzeros) - nonzeros
    seq = np.empty(2 * n_runs + vals.size, np.int64)
    seq[heads] = zeros
    seq[heads + 1] = nonzeros
    is_value = np.ones(seq.size, bool)
    is_value[heads] = False
    is_value[heads + 1] = False
    seq[is_value] = zig
    return _pack(seq)


def _pack(seq: np.ndarray) -> bytes:
    """Integers -> variable-length nibble code packed in little-endian 32-bit words.

    Loops over nibble positions, each over only the values that long: most values (small
    deltas) take one or two nibbles.
    """
    count = np.ones(seq.size, np.int64)  # nibbles per value
    longer = np.flatnonzero(seq >= 8)
    while longer.size:
        count[longer] += 1
        longer = longer[seq[longer] >= 8 ** count[longer]]
    first = np.cumsum(count) - count
    nib = np.zeros(int(count.sum()) + (-int(count.sum())) % 8, np.uint8)
    at = np.arange(seq.size)
    j = 0
    while at.size:
        chunk = (seq[at] >> (3 * j)) & 7
        nib[first[at] + j] = chunk | np.where(count[at] > j + 1, 8, 0)
        j += 1
        at = at[count[at] > j]
    be = (nib[0::2] << 4) | nib[1::2]  # each word's bytes, most significant first
    return be.reshape(-1, 4)[:, ::-1].tobytes()
