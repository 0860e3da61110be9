"""A local model fetched on first load: model-compose's ``model: {provider: local, url:, bundled:}``.

::

    model:
      provider: local
      url: https://example.org/packs/antelopev2.zip     # or {endpoint, method, headers, body, timeout}
      bundled: true                                     # an archive, unpacked into `path`
      path: ./models/antelopev2                         # optional: see default_path

When ``path`` is missing on disk the file at ``url`` is downloaded to it (:func:`ensure_local`); when it
is there, it is used as it is and nothing goes over the network. Without ``path`` the path is
``$XDG_CACHE_HOME/models/<file name of the URL>`` (``~/.cache/models/...`` when XDG_CACHE_HOME is unset),
with the archive suffix (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar``) taken off the folder's name for
``bundled: true``: model-compose's ``apply_default_path`` (:func:`default_path`).

The download streams to a temporary file beside the target and is renamed into place once whole (a
``Content-Length`` that does not match is an error), so an interrupted or failed download leaves
nothing half-written. An archive is unpacked into a temporary folder beside ``path`` and that folder
renamed to ``path``; entries that would land outside it (absolute names, ``..``, links pointing out,
device files) refuse the whole archive. As in model-compose the archive's contents become ``path``'s
contents as they are (a single top folder is kept; the face-embedding pack reader looks into
``path/<name>/`` the way model-compose's InsightFace driver flattens it).

Errors are :class:`~mc_jupyter.errors.ModelLoadError`s naming the component, the URL (scrubbed of
``${env.*}`` secrets, as are headers, which are never shown) and what to do instead.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from .. import progress
from ..binding import Scope, parse_template, render
from ..config.schema import LocalSource, UrlFetch
from ..errors import ModelLoadError
from ..secrets import scrub

#: The archive suffixes of ``bundled: true``, longest first (model-compose's order).
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

#: Seconds a download waits for the connection and for each read when ``timeout:`` is not given.
DEFAULT_TIMEOUT = 60.0

CHUNK = 1 << 20


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/models``, or ``~/.cache/models`` (model-compose's ``get_cache_dir``)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "models")


def url_fetch(local: LocalSource) -> Optional[UrlFetch]:
    """``url:`` as a :class:`UrlFetch` (a plain string is its ``endpoint``), or None."""
    if local.url is None:
        return None
    return UrlFetch(endpoint=local.url) if isinstance(local.url, str) else local.url


def url_file_name(endpoint: str) -> str:
    """The last segment of the URL's path (no query, no fragment), unquoted."""
    return unquote(os.path.basename(urlparse(endpoint).path.rstrip("/")))


def strip_archive_suffix(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def default_path(local: LocalSource) -> Optional[str]:
    """``path:`` as written, else the one model-compose derives from ``url:`` (:func:`cache_dir`)."""
    if local.path:
        return local.path
    fetch = url_fetch(local)
    if fetch is None:
        return None
    name = url_file_name(_rendered(fetch.endpoint))
    if not name:
        raise ModelLoadError(f"the model URL {scrub(_rendered(fetch.endpoint))} names no file, so there is no "
                             f"default path for it.\n  Add `path:` (where to put the download).")
    return os.path.join(cache_dir(), strip_archive_suffix(name) if local.bundled else name)


def is_pending(local: LocalSource) -> bool:
    """Whether the model is not on disk yet but has a ``url:`` to fetch it from."""
    path = default_path(local)
    return local.url is not None and not os.path.exists(os.path.abspath(os.path.expanduser(path or "")))


def ensure_local(local: LocalSource, component: Optional[str] = None) -> str:
    """The absolute path of a local model, downloaded (and, ``bundled``, unpacked) first when it is missing
    and ``url:`` says where it is; a path already there is returned as it is, with no network at all."""
    path = default_path(local)
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(full) or local.url is None:
        return full
    fetch = url_fetch(local)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if local.bundled:
        _fetch_bundle(fetch, full, component)
    else:
        download(fetch, full, component)
    return full


# -- the download ----------------------------------------------------------------------------------

class _Failed(Exception):
    """What went wrong, in words for the user (turned into a ModelLoadError by :func:`_error`)."""


def download(fetch: UrlFetch, target: str, component: Optional[str] = None) -> None:
    """Stream ``fetch`` to ``target`` through a temporary file beside it, renamed in place once whole."""
    try:
        _download(fetch, target)
    except _Failed as e:
        raise _error(component, _rendered(fetch.endpoint), str(e), target, bundled=False) from None


def _download(fetch: UrlFetch, target: str) -> None:
    import httpx

    endpoint = _rendered(fetch.endpoint)
    headers = {str(k): str(v) for k, v in (_rendered(fetch.headers) or {}).items()}
    body = _rendered(fetch.body)
    content = {"json": body} if isinstance(body, dict) else {"content": body} if body is not None else {}
    seconds = float(fetch.timeout) if fetch.timeout is not None else DEFAULT_TIMEOUT
    name = url_file_name(endpoint) or os.path.basename(target)
    fd, part = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.Client(timeout=httpx.Timeout(seconds), follow_redirects=True) as client, \
                        client.stream(fetch.method, endpoint, headers=headers, **content) as response:
                    if response.status_code >= 400:
                        raise _Failed(f"the server answered HTTP {response.status_code} "
                                      f"{response.reason_phrase or ''}".rstrip())
                    expected = _length(response)
                    got = _stream(response, out, name, expected)
            except httpx.TimeoutException as e:
                raise _Failed(f"it timed out after {seconds:g} s ({type(e).__name__}); a larger `timeout:` under "
                              f"`url:` gives it longer") from None
            except (httpx.HTTPError, httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
                first = str(e).strip().splitlines()
                raise _Failed(f"the request failed ({type(e).__name__}{': ' + first[0] if first else ''})") from None
        if expected is not None and got != expected:
            raise _Failed(f"the download stopped after {got} of {expected} bytes")
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def _length(response: Any) -> Optional[int]:
    """The body's length the server announced, when the bytes read can be checked against it."""
    if response.headers.get("content-encoding", "identity") not in ("", "identity"):
        return None            # httpx decodes the body: what is read is not what was announced
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _stream(response: Any, out: Any, name: str, expected: Optional[int]) -> int:
    """Copy the body to ``out``, the progress bar saying how much is in (a step of the load's bar)."""
    got, shown = 0, 0.0
    with progress.bar(f"downloading {name}", done=f"downloaded {name}") as bar:
        bar.step(f"downloading {name}")
        for chunk in response.iter_bytes(CHUNK):
            out.write(chunk)
            got += len(chunk)
            now = time.monotonic()
            if now - shown > 0.25:
                shown = now
                bar.advance(0, stage=f"downloading {name}: {_size(got, expected)}")
        bar.advance(0, stage=f"downloaded {name}: {_size(got, None)}")
    return got


def _size(got: int, expected: Optional[int]) -> str:
    mib = got / 2 ** 20
    return f"{mib:.1f} / {expected / 2 ** 20:.1f} MiB" if expected else f"{mib:.1f} MiB"


def _rendered(value: Any) -> Any:
    """``${env.*}`` in the URL, headers and body resolved (read through :mod:`mc_jupyter.secrets`, so scrubbed
    wherever shown)."""
    if isinstance(value, str):
        return render(parse_template(value), Scope())
    if isinstance(value, dict):
        return {k: _rendered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v) for v in value]
    return value


def _error(component: Optional[str], endpoint: str, what: str, target: str, bundled: bool) -> ModelLoadError:
    who = f"the model of component `{component}`" if component else "the model"
    fix = (f"download the archive yourself and unpack it into {target}" if bundled
           else f"download it yourself to {target}")
    return ModelLoadError(scrub(f"could not fetch {who} from {endpoint}: {what}. Nothing was written.\n"
                                f"  Check the URL (and `headers:` under `url:`, for a token), or {fix}: a `path:` "
                                f"that is there is used as it is, with no network."))


# -- bundles: an archive unpacked into `path` ------------------------------------------------------------

def _fetch_bundle(fetch: UrlFetch, target: str, component: Optional[str]) -> None:
    endpoint = _rendered(fetch.endpoint)
    parent = os.path.dirname(target)
    fd, archive = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".archive", dir=parent)
    os.close(fd)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".unpacking", dir=parent)
    try:
        try:
            _download(fetch, archive)
            unpack(archive, staging, _archive_kind(endpoint, archive))
        except _Failed as e:
            raise _error(component, endpoint, str(e), target, bundled=True) from None
        if os.path.exists(target):      # another process got there first: keep theirs
            return
        os.replace(staging, target)
    finally:
        if os.path.exists(archive):
            os.unlink(archive)
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _archive_kind(endpoint: str, archive: str) -> str:
    """``zip`` or ``tar`` from the URL's suffix (model-compose's rule), else from the bytes themselves."""
    name = url_file_name(endpoint).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    try:
        if tarfile.is_tarfile(archive):
            return "tar"
    except (OSError, EOFError, zlib.error):
        pass
    raise _Failed("`bundled: true` says it is an archive, but it is neither a zip nor a tar file (the URL ends in "
                  "none of .zip, .tar.gz, .tgz, .tar either); drop `bundled:` for a single file")


def unpack(archive: str, folder: str, kind: str) -> None:
    """Unpack a zip or tar (gzip, bz2 or xz) archive into ``folder``, refusing it whole when any entry would
    land outside ``folder`` (an absolute name, ``..``, a link pointing out, a device file)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    mode = info.external_attr >> 16
                    _check_name(info.filename)
                    if stat.S_ISLNK(mode):
                        raise _Failed(f"the archive holds a link, `{info.filename}`, which is not unpacked from a zip")
                bad = zf.testzip()
                if bad is not None:
                    raise _Failed(f"the archive is corrupt (entry `{bad}` fails its CRC check)")
                zf.extractall(folder)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    _check_name(member.name)
                    if member.issym() or member.islnk():
                        _check_link(member)
                    elif not (member.isfile() or member.isdir()):
                        raise _Failed(f"the archive holds `{member.name}`, which is neither a file nor a folder")
                tf.extractall(folder, filter="data")
    except _Failed:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise _Failed(f"it is not a valid {kind} archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                      .replace(": )", ")")) from None


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise _Failed(f"the archive holds `{name}`, which would be written outside the model's folder; "
                      f"it is refused (nothing was unpacked)")


def _check_link(member: tarfile.TarInfo) -> None:
    target = member.linkname
    base = os.path.dirname(member.name) if member.issym() else ""
    resolved = os.path.normpath(os.path.join(base, target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise _Failed(f"the archive holds a link `{member.name}` -> `{target}`, which points outside the model's "
                      f"folder; it is refused (nothing was unpacked)")


def describe(local: LocalSource) -> str:
    """``local: PATH`` and, for a model still to fetch, where from (scrubbed)."""
    path = default_path(local)
    if is_pending(local):
        fetch = url_fetch(local)
        return scrub(f"local: {path} (fetched from {_rendered(fetch.endpoint)} on first load)")
    return f"local: {path}"

