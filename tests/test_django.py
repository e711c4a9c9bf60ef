"""The Django backend (``ENGINE: "litevfs.django"``) on a replica: the test project in
tests/django_project is migrated on a new database in write mode, written through the
ORM, read back by a read-only process, and dumped with ``dumpdata``. Each step is a
real ``manage.py`` process; the pure twin runs with LITEVFS_NO_EXTENSIONS=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.s3, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parent / "django_project"


def manage(core: ModuleType, name: str, options: dict[str, Any], *args: str,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LITEVFS_DJANGO_NAME=name, LITEVFS_DJANGO_OPTIONS=json.dumps(options),
               DJANGO_SETTINGS_MODULE="settings", AWS_EC2_METADATA_DISABLED="true")
    if core.__name__.endswith("_py"):
        env["LITEVFS_NO_EXTENSIONS"] = "1"
    else:
        env.pop("LITEVFS_NO_EXTENSIONS", None)
    out = subprocess.run([sys.executable, str(PROJECT / "manage.py"), *args], cwd=PROJECT,
                         env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


WRITE = """
import datetime, decimal
from library.models import Author, Book
ada = Author.objects.create(name="Ada", born=datetime.date(1815, 12, 10))
Book.objects.create(author=ada, title="Notes", price=decimal.Decimal("12.50"),
                    published=datetime.datetime(1843, 10, 1, tzinfo=datetime.timezone.utc))
grace = Author.objects.create(name="Grace")
Book.objects.create(author=grace, title="COBOL", price=decimal.Decimal("9.99"))
from django.db import IntegrityError, transaction
try:
    with transaction.atomic():
        Author.objects.create(name="Ada")
except IntegrityError:
    print("duplicate refused")
"""

READ = """
from library.models import Author, Book
print(sorted((b.title, b.author.name, str(b.price)) for b in Book.objects.select_related("author")))
print(Author.objects.get(name="Ada").born.isoformat(), Book.objects.filter(price__gt=10).count())
"""


def test_migrate_write_read_and_dumpdata(core: ModuleType, fresh_s3_url: str) -> None:
    manage(core, fresh_s3_url, {"write": True}, "migrate", "--noinput")
    wrote = manage(core, fresh_s3_url, {"write": True}, "shell", "-c", WRITE)
    assert "duplicate refused" in wrote.stdout
    read = manage(core, fresh_s3_url, {}, "shell", "-c", READ)
    assert read.stdout.splitlines()[-2:] == [
        "[('COBOL', 'Grace', '9.99'), ('Notes', 'Ada', '12.50')]", "1815-12-10 1"]
    dumped = manage(core, fresh_s3_url, {}, "dumpdata", "library", "--indent", "0")
    objects = json.loads(dumped.stdout)
    assert [o["model"] for o in objects] == ["library.author"] * 2 + ["library.book"] * 2
    assert objects[2]["fields"]["price"] == "12.50"
    # migrations are recorded in the replica: a second migrate has nothing to do
    again = manage(core, fresh_s3_url, {"write": True}, "migrate", "--noinput")
    assert "No migrations to apply" in again.stdout


def test_read_only_replica_refuses_orm_writes(core: ModuleType, fresh_s3_url: str) -> None:
    manage(core, fresh_s3_url, {"write": True}, "migrate", "--noinput", "library")
    out = manage(core, fresh_s3_url, {}, "shell", "-c",
                 "from library.models import Author; Author.objects.create(name='x')",
                 check=False)
    assert out.returncode != 0
    assert "attempt to write a readonly database" in out.stderr
    assert "OperationalError" in out.stderr
