"""The multi-table database of ``queries.py``: a small social site.

    users 100k, posts 1M (the largest table, ~570 MB), comments 2M, tags 1k,
    post_tags 3M (WITHOUT ROWID), 9 secondary indexes; ~1 GB at scale 1.0.

Rows are written in time order, as an application would: users first, then batches of
posts with their tags, each batch followed by comments that mostly land on recent posts.
So the pages of posts, comments, post_tags and every index are interleaved in the file
(what a real database looks like, and what makes scans and index walks hard to coalesce),
and the newest posts, their tags and most of their comments sit near each other. The
content is deterministic for a given scale and seed.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
                   country TEXT NOT NULL, created_at INTEGER NOT NULL, bio TEXT);
CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title TEXT NOT NULL,
                   body TEXT NOT NULL, score INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE comments(id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL,
                      user_id INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE post_tags(post_id INTEGER NOT NULL, tag_id INTEGER NOT NULL,
                       PRIMARY KEY(post_id, tag_id)) WITHOUT ROWID;
CREATE UNIQUE INDEX users_email ON users(email);
CREATE INDEX users_country ON users(country);
CREATE UNIQUE INDEX tags_name ON tags(name);
CREATE INDEX posts_user ON posts(user_id);
CREATE INDEX posts_created ON posts(created_at);
CREATE INDEX posts_score ON posts(score);
CREATE INDEX comments_post ON comments(post_id);
CREATE INDEX comments_user ON comments(user_id);
CREATE INDEX post_tags_tag ON post_tags(tag_id);
"""

TAGS = 1000
START = 1_600_000_000  # created_at of the first post (unix seconds)
SPAN = 3 * 365 * 86400  # the posts cover three years
BATCH = 2000  # posts per batch (their tags and ~2 comments each follow)


def counts(scale: float) -> dict[str, int]:
    return {"users": max(100, round(100_000 * scale)), "posts": max(1000, round(1_000_000 * scale)),
            "tags": TAGS}


def _vocabulary(rng: random.Random, n: int = 4096) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "an", "el", "or", "us",
                 "ba", "de", "fi", "go", "hu", "ja", "pe", "qu", "ri", "so", "tu", "wa", "xi"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def make_db(path: str | Path, scale: float = 1.0, *, seed: int = 1, page_size: int = 4096) -> Path:
    """Build the database at ``path`` (WAL mode, checkpointed). ~1 GB at scale 1.0."""
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    n = counts(scale)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute(f"PRAGMA page_size = {page_size}")
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.execute("PRAGMA cache_size = -524288")  # 512 MiB: random index inserts stay in RAM
        con.executescript(SCHEMA)
        con.execute("BEGIN")

        def text(lo: int, hi: int) -> str:
            return " ".join(rng.choices(vocab, k=rng.randint(lo, hi)))

        con.executemany("INSERT INTO tags VALUES (?, ?)",
                        [(i, f"{vocab[i % len(vocab)]}-{i}") for i in range(1, TAGS + 1)])
        countries = [a + b for a in "ABCDEFGH" for b in "ABCDE"]
        users = n["users"]
        for lo in range(1, users + 1, 10_000):
            rows = []
            for uid in range(lo, min(users, lo + 9_999) + 1):
                first, last = rng.choice(vocab), rng.choice(vocab)
                rows.append((uid, f"{first.title()} {last.title()}",
                             f"{first}.{last}.{uid}@example.com", rng.choice(countries),
                             START - SPAN + uid * (SPAN // users), text(8, 20)))
            con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", rows)
        posts = n["posts"]
        step = SPAN / posts
        comment_id = 0
        for lo in range(1, posts + 1, BATCH):
            hi = min(posts, lo + BATCH - 1)
            rows, tag_rows = [], []
            for pid in range(lo, hi + 1):
                author = int(users * rng.random() ** 2) + 1  # some users post a lot
                rows.append((pid, author, text(4, 10), text(40, 80), int(rng.paretovariate(1.2)),
                             START + int(pid * step)))
                for tag in set(int(TAGS * rng.random() ** 3) + 1  # popular tags first
                               for _ in range(rng.randint(1, 5))):
                    tag_rows.append((pid, tag))
            con.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.executemany("INSERT INTO post_tags VALUES (?, ?)", tag_rows)
            comments = []
            for _ in range(2 * (hi - lo + 1)):
                comment_id += 1
                target = max(1, hi - int(rng.expovariate(1 / 3000)))  # mostly recent posts
                comments.append((comment_id, target, rng.randint(1, users), text(8, 25),
                                 START + int(hi * step) + rng.randint(0, int(step * BATCH))))
            con.executemany("INSERT INTO comments VALUES (?, ?, ?, ?, ?)", comments)
        con.execute("COMMIT")
        con.execute("ANALYZE")  # as an application's PRAGMA optimize would: good join plans
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return path


if __name__ == "__main__":
    import sys
    import time

    t = time.monotonic()
    out = make_db(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t:.1f}s")
