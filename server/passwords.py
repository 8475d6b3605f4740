"""Password hashes of invited accounts: argon2id (``argon2-cffi``, which Jupyter Server itself
depends on) with a random 16-byte salt; the parameters are stored in the hash string
(``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``), so they can be raised later without breaking
stored hashes.

Hashing is slow and memory-hard on purpose (about 0.1 s and 64 MiB each), so it runs in a
pool of two threads: at most two hashes at a time (bounded memory, the event loop keeps
running), and at most ``MAX_WAITING`` waiting; past that the host answers 429.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kohakuriver_lab.errors import TooManyRequests

T = TypeVar("T")
MAX_WAITING = 16
_HASHER = PasswordHasher()  # RFC 9106 "low memory" profile: argon2id, t=3, m=64 MiB, p=4
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kohakuriver-passwords")
_waiting = 0
_lock = threading.Lock()


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password`` (slow)."""
    return _HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``. Without a stored hash, a dummy one is checked
    anyway, so unknown user names take as long as wrong passwords."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def _in_pool(function: Callable[[], T]) -> T:
    global _waiting
    with _lock:
        if _waiting >= MAX_WAITING:
            raise TooManyRequests("the host is busy checking passwords; try again in a minute")
        _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_POOL, function)
    finally:
        with _lock:
            _waiting -= 1


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` in the bounded pool."""
    return await _in_pool(functools.partial(hash_password, password))


async def verify_password_async(stored: str | None, password: str) -> bool:
    """:func:`verify_password` in the bounded pool."""
    return await _in_pool(functools.partial(verify_password, stored, password))
