"""The Merkle tree of RFC 6962 / RFC 9162 §2.1: hashes, proofs, and their verification.

Pure functions over leaf hashes (no files): leaf hash ``SHA-256(0x00 || leaf)``,
node hash ``SHA-256(0x01 || left || right)``, a tree of ``n`` leaves split at the
largest power of two below ``n``. :class:`Tree` remembers the hash of every
complete power-of-two subtree it computed (those never change as the log grows),
so the root after each append and each proof cost O(log n) hashes, not O(n).
A tree can also start from a *compact range*: the hashes of the complete subtrees
that cover its first ``size`` leaves, left to right (one per bit set in ``size``,
so at most log2 n of them). That is all an appender needs for the next root and
for the audit paths of the leaves it adds; ``Tree.compact_range()`` gives it back.
The verifiers follow the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms step by step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "Tree",
    "compact_spans",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def compact_spans(size: int) -> list[tuple[int, int]]:
    """The complete subtrees ``[start, end)`` that cover leaves ``0..size``, left to right."""
    spans: list[tuple[int, int]] = []
    start = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            spans.append((start, start + (1 << bit)))
            start += 1 << bit
    return spans


class Tree:
    """A Merkle tree over leaf hashes that only grows."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self._first = 0  # leaves before this index are known by the compact range only
        self._leaves: list[bytes] = list(leaves)
        self._memo: dict[tuple[int, int], bytes] = {}

    @classmethod
    def from_compact_range(cls, size: int, hashes: Sequence[bytes]) -> Tree:
        """The tree of ``size`` leaves known only by its compact range (``hashes``)."""
        spans = compact_spans(size)
        if len(hashes) != len(spans):
            raise ValueError(
                f"a tree of {size} leaves has a compact range of {len(spans)} hashes, "
                f"got {len(hashes)}"
            )
        tree = cls()
        tree._first = size
        tree._memo = dict(zip(spans, hashes, strict=True))
        return tree

    @property
    def leaves(self) -> list[bytes]:
        """Every leaf hash, in order (a tree started from a compact range has none before it)."""
        if self._first:
            raise ValueError(
                f"this tree started from the compact range of {self._first} leaves; "
                "build it from every leaf to read them"
            )
        return self._leaves

    def __len__(self) -> int:
        return self._first + len(self._leaves)

    def append(self, leaf_hash_: bytes) -> int:
        """Add a leaf hash; its index."""
        self._leaves.append(leaf_hash_)
        return len(self) - 1

    def compact_range(self, size: int | None = None) -> list[bytes]:
        """The hashes of :func:`compact_spans` of the first ``size`` leaves (all by default)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"tree size {size} outside 0..{len(self)}")
        return [self._mth(start, end) for start, end in compact_spans(size)]

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1 and start >= self._first:
            return self._leaves[start - self._first]
        full = n & (n - 1) == 0
        if full and (start, end) in self._memo:
            return self._memo[(start, end)]
        if end <= self._first:
            raise ValueError(
                f"leaves {start}..{end} lie inside the compact range this tree started from "
                f"({self._first} leaves); only proofs for leaves from {self._first} on exist"
            )
        k = _split(n)
        value = node_hash(self._mth(start, start + k), self._mth(start + k, end))
        if full:
            self._memo[(start, end)] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"tree size {size} outside 0..{len(self)}")
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1."""
        size = len(self) if size is None else size
        if not 0 <= index < size <= len(self):
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._mth(start, start + k))
                start += k
        return path[::-1]

    def consistency_proof(self, first: int, size: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:size]) of RFC 9162 §2.1.4.1."""
        size = len(self) if size is None else size
        if not 0 < first <= size <= len(self):
            raise ValueError(f"no consistency proof from size {first} to {size}")
        proof: list[bytes] = []
        start, end, whole = 0, size, True
        m = first
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._mth(start, end))
        return proof[::-1]


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` under ``root``?"""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree of ``first`` leaves is a prefix?"""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
