"""Keyed pseudonyms: HMAC-SHA-256 of source identifiers under a secret kept outside the database.

The same source identifier always maps to the same pseudonym under the same secret, so a later
export of the same EHR lands on the same clients, episodes and therapists. Without the secret the
database cannot be reversed by hashing known identifiers (a plain hash could be).

Where the secret comes from, in order:

1. the environment variable ``ALLIANCE_SECRET_KEY`` (any string of at least 16 characters; a
   deployment's secret store sets it);
2. else a key file beside the database (``<db folder>/.alliance_secret_key``, git-ignored),
   created on the first import with owner-only permissions (0600) from 32 random bytes.

The secret is never written into the database. The database keeps only a *key check*
(an HMAC of a fixed label), so an import under a different secret is refused instead of
silently creating a second set of pseudonyms for the same people.

Message formats (shared with the demo clinic, ``alliance.demo.pseudonym``):
``client:<id>``, ``therapist:<id>``, ``episode:<client pseudonym>:<episode id>``.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "ALLIANCE_SECRET_KEY"
KEY_FILE_NAME = ".alliance_secret_key"
MIN_ENV_KEY_CHARS = 16
_CHECK_LABEL = b"alliance-key-check-v1"


class SecretKeyError(Exception):
    """The secret is missing, unreadable, too weak or too widely readable."""


@dataclass(frozen=True)
class SecretKey:
    """The HMAC key and where it came from ('env', 'file', 'new file' or 'ephemeral')."""

    key: bytes
    source: str
    path: Path | None = None

    def __repr__(self) -> str:  # never print the key itself
        return f"SecretKey(source={self.source!r}, path={self.path!r})"

    def pseudonym(self, kind: str, raw: str) -> str:
        return pseudonym(self.key, kind, raw)

    @property
    def check(self) -> str:
        """A fingerprint of the key, stored in the database to detect a changed secret."""
        return hmac.new(self.key, _CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


def pseudonym(key: bytes, kind: str, raw: str) -> str:
    """HMAC-SHA-256 of ``"<kind>:<raw>"`` as 64 hex characters."""
    return hmac.digest(key, f"{kind}:{raw}".encode(), "sha256").hex()


def episode_message(client_pseudonym: str, episode_raw: str) -> str:
    """The raw part of an episode pseudonym: unambiguous because client pseudonyms are hex."""
    return f"{client_pseudonym}:{episode_raw}"


def key_path(db_path: Path) -> Path:
    """Default key file: beside the database (``data/.alliance_secret_key`` for the app)."""
    return Path(db_path).resolve().parent / KEY_FILE_NAME


def load_key(db_path: Path, *, create: bool = True) -> SecretKey:
    """The secret for the database at `db_path`: environment, else key file (created if asked).

    With ``create=False`` and no secret anywhere, returns a random *ephemeral* key (for dry runs
    and previews: nothing is written, so nothing needs to match later).
    """
    env = os.environ.get(ENV_VAR)
    if env is not None:
        if len(env.strip()) < MIN_ENV_KEY_CHARS:
            raise SecretKeyError(
                f"{ENV_VAR} is set but shorter than {MIN_ENV_KEY_CHARS} characters: use a long "
                "random value (e.g. the output of `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`)."
            )
        return SecretKey(env.strip().encode(), "env")
    path = key_path(db_path)
    if path.exists():
        return SecretKey(_read_key_file(path), "file", path)
    if not create:
        return SecretKey(secrets.token_bytes(32), "ephemeral")
    return SecretKey(_create_key_file(path), "new file", path)


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretKeyError(
            f"the key file {path} can be read by other users (mode {stat.filemode(mode)}); "
            f"make it owner-only with: chmod 600 {path}"
        )
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise SecretKeyError(f"the key file {path} does not hold a valid key (64 hex characters)")
    return key


def _create_key_file(path: Path) -> bytes:
    """Create the key file atomically; the loser of a race reads the winner's key.

    The key is written, flushed and synced to a private temporary file first (exclusive create,
    0600 before any byte), then hard-linked to the final name: the link either creates the
    complete file or fails because another process's is there, which is then read (never a
    half-written one). On a filesystem without hard links, an exclusive create of the final name
    is used, and a loser waits briefly for the winner's key to be complete.
    """
    from alliance.db import private_dir  # a folder created here is its owner's only (0700)

    private_dir(path.parent)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        _write_new(tmp, key)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another import created it a moment ago: use that one
            return _read_key_file(path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _create_without_links(path, key)
        _sync_folder(path.parent)
        return key
    finally:
        tmp.unlink(missing_ok=True)


def _write_new(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # before the key is written, whatever the umask
        os.write(fd, (key.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_without_links(path: Path, key: bytes, wait_s: float = 5.0) -> bytes:
    try:
        _write_new(path, key)
    except FileExistsError:
        deadline = time.monotonic() + wait_s
        while True:  # the winner may still be writing its 65 bytes
            try:
                return _read_key_file(path)
            except SecretKeyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
    _sync_folder(path.parent)
    return key


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (the file's bytes are synced already)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
