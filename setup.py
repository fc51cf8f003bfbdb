"""Packs config/default.toml and seeds/ into the wheel, as retrieval/_data/config/ and retrieval/_data/seeds/.

config/default.toml stays the one place the defaults are written: this copies it at build time.
Inside the wheel the two folders keep their places relative to each other, so the defaults'
`paths = ["../seeds"]` names the packed seeds. retrieval/settings.py reads them with
importlib.resources. An editable install (`pip install -e .`) reads the checkout's own files.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKED = {"config": "default.toml", "seeds": "*.txt"}  # folder at the top of the repo: the files to pack
TARGET = Path("retrieval") / "_data"  # retrieval/settings.py PACKAGE_DATA


class BuildWithData(build_py):
    """build_py, plus the defaults and the seeds as data of the `retrieval` package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder, pattern in PACKED.items():
            files = sorted((ROOT / folder).glob(pattern))
            if not files:
                raise SystemExit(f"setup.py: no {folder}/{pattern} to pack: the wheel would have no defaults")
            target = Path(self.build_lib) / TARGET / folder
            self.mkpath(str(target))
            for source in files:
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildWithData})
