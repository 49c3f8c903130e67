"""A bytecode cache for modules imported from zip files: the kernel VM's guest image only.

Python keeps the compiled code of every module it imports from a directory (__pycache__)
but compiles a module imported from a zip file from source at every import. Ansible runs
each task as a new Python process that imports its module_utils from such a zip
(AnsiballZ), so under QEMU's TCG about 5 of a task's 7 seconds went into compiling the
same sources again (measured: python3 -X importtime on an AnsiballZ payload in the guest).

scripts/vm-image.sh installs this module and a .pth line that imports it into the guest's
/usr/local/lib/python3.11/dist-packages. It wraps zipimport's compile step: the code
object is stored under the SHA-256 of the interpreter's magic number and the source, in a
directory only root can write, and loaded from there the next time the same source is
imported. What runs is what Python compiles from that source (only the file name in
tracebacks is set to the current one); anything unexpected falls back to compiling.
"""

import hashlib
import importlib.util
import marshal
import os
import types
import zipimport

CACHE_DIR = "/var/cache/irontrack-zipimport"
_compile_source = getattr(zipimport, "_compile_source", None)


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def _trusted_dir() -> bool:
    st = os.stat(CACHE_DIR)
    return st.st_uid == 0 and not st.st_mode & 0o022


def _cached_compile_source(pathname: str, source: bytes) -> types.CodeType:
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + b"\0" + source).hexdigest()
    path = os.path.join(CACHE_DIR, key)
    try:
        if _trusted_dir():
            with open(path, "rb") as f:
                # Written only by root into a root-owned directory nobody else can write.
                code = marshal.load(f)  # noqa: S302
            if isinstance(code, types.CodeType):
                return _renamed(code, pathname)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    if os.geteuid() == 0:
        try:
            os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                marshal.dump(code, f)
            os.replace(tmp, path)
        except OSError:
            pass
    return code


if _compile_source is not None:
    zipimport._compile_source = _cached_compile_source
