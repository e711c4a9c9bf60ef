"""Build the compiled core ``litevfs._pagecache`` from ``src/_pagecache.pyx``.

``LITEVFS_NO_EXTENSIONS=1`` skips it (a pure-Python wheel). Otherwise a failed
compile fails the install: the pure twin is never shipped silently. POSIX only.
"""

import glob
import os
import platform
import shutil

from setuptools import setup

if os.name != "posix":
    # fcntl locks, os.pread and POSIX rename/fsync semantics: one clear line, not a
    # build that fails later or a package that breaks at run time.
    raise SystemExit("litevfs supports POSIX systems only (Linux, macOS), not " + os.name)

# setuptools reuses build/lib* between builds of one checkout: a module deleted or moved
# since the last build would still be packed into the wheel. Every build starts clean.
for stale in glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build", "lib*")):
    shutil.rmtree(stale, ignore_errors=True)

ext_modules = []
if os.environ.get("LITEVFS_NO_EXTENSIONS", "") in ("", "0") and platform.python_implementation() == "CPython":
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = os.environ.get("LITEVFS_DEBUG_BUILD") == "1"
    ext_modules = cythonize(
        [
            Extension(
                "litevfs._pagecache",
                ["src/_pagecache.pyx"],
                extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
            )
        ],
        compiler_directives={"language_level": 3, "embedsignature": True},
    )

setup(ext_modules=ext_modules)
