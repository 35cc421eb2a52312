"""Writing data-preparation outputs so that a killed run is never trusted.

Both recipes' preparation scripts write JSON manifests plus an options
file that says for which inputs they were made. Each file is written to a
temporary name and renamed into place, the options file last, and a re-run
only skips the work when every manifest still parses.

Authors
 * speechbrain-emosllm contributors 2026
"""

import hashlib
import json
import os


def write_json_atomically(path, content):
    """Writes JSON to ``<path>.tmp`` then renames it over ``path``.

    Arguments
    ---------
    path : str
        Destination.
    content : object
        JSON-serialisable content.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.json")
    >>> write_json_atomically(path, {"x": 1}); json.load(open(path))
    {'x': 1}
    """
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=1)
    os.replace(temporary, path)


def manifests_valid(paths):
    """Whether every file exists and parses as a non-empty JSON object.

    Arguments
    ---------
    paths : iterable of str
        Manifest files.

    Returns
    -------
    bool

    Example
    -------
    >>> manifests_valid(["/no/such/manifest.json"])
    False
    """
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, ValueError):
            return False
        if not isinstance(content, dict) or not content:
            return False
    return True


def file_digest(path):
    """SHA-256 of a file's bytes (e.g. a label table).

    Arguments
    ---------
    path : str
        File to hash.

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "w").write("x")
    >>> file_digest(path)[:12]
    '2d711642b726'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listing_digest(paths):
    """Hash of files' paths, sizes and modification times.

    What a preparation depends on besides its options: restoring, adding,
    replacing or removing one of ``paths`` changes it. A missing path is
    hashed as missing.

    Arguments
    ---------
    paths : iterable of str
        Files, in a fixed order.

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> before = listing_digest([path])
    >>> _ = open(path, "w").write("x")
    >>> listing_digest([path]) != before
    True
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            entry = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        except FileNotFoundError:
            entry = f"{path}\0missing\n"
        digest.update(entry.encode())
    return digest.hexdigest()


def folder_listing(folder):
    """Every file under ``folder`` (recursively), sorted; [] if none.

    Example
    -------
    >>> folder_listing("/no/such/folder")
    []
    """
    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.join(root, name) for name in names]
    return sorted(files)


def options_match(path, options):
    """Whether the options file at ``path`` holds exactly ``options``.

    Arguments
    ---------
    path : str
        Options file written by a previous run.
    options : dict
        This run's options.

    Returns
    -------
    bool

    Example
    -------
    >>> options_match("/no/such/options.json", {})
    False
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f) == options
    except (OSError, ValueError):
        return False
