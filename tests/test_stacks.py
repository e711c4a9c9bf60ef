"""SQLAlchemy (Core, ORM, reflection, Session commits, dispose), pandas and sqlite-utils
on replicas: the one made by the real ``litestream replicate`` (read-only) and fresh ones
in write mode, on SeaweedFS, with both core twins."""

from __future__ import annotations

import warnings
from types import ModuleType
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import litevfs
from litevfs import dbapi2
from tests.dbapi_support import AUTHORS, BOOKS, LitestreamReplica

pytestmark = [pytest.mark.s3]


def engine_url(replica_url: str) -> str:
    """s3://bucket/path?query -> litevfs+s3://bucket/path?query (the same replica)."""
    return "litevfs+" + replica_url


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    born: Mapped[str | None]
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
    title: Mapped[str]
    price: Mapped[float | None]
    cover: Mapped[bytes | None]
    author: Mapped[Author] = relationship(back_populates="books")


def test_core_orm_and_reflection_on_a_litestream_replica(
        core: ModuleType, litestream_replica: LitestreamReplica) -> None:
    engine = sa.create_engine(engine_url(litestream_replica.url), connect_args={"impl": core})
    assert engine.dialect.name == "sqlite" and engine.dialect.driver == "litevfs"
    assert isinstance(engine.pool, sa.pool.QueuePool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM books")).scalar() == len(BOOKS)
        books = sa.Table("books", sa.MetaData(), autoload_with=conn)
        assert [c.name for c in books.columns] == ["id", "author_id", "title", "price", "cover"]
        assert conn.execute(sa.select(books.c.title).where(books.c.id == 7)).scalar() == "Book 7"
    inspector = sa.inspect(engine)
    assert {"authors", "books"} <= set(inspector.get_table_names())
    assert inspector.get_foreign_keys("books")[0]["referred_table"] == "authors"
    assert [i["name"] for i in inspector.get_indexes("books")] == ["books_author"]
    with Session(engine) as session:
        ada = session.scalars(sa.select(Author).where(Author.name == "Ada")).one()
        assert len(ada.books) == 13 and ada.books[0].title == "Book 3"
        grace = session.get(Author, 2)
        assert grace is not None and grace.born == AUTHORS[1][2]
    engine.dispose()
    assert not [r for r in litevfs_replicas() if r.config.replica_url == litestream_replica.url]


def litevfs_replicas() -> list:
    from litevfs.session import open_replicas

    return open_replicas()


def test_session_commits_in_write_mode(core: ModuleType, fresh_s3_url: str) -> None:
    engine = sa.create_engine(engine_url(fresh_s3_url) + "&write=true",
                              connect_args={"impl": core})
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Author(name="Ada", books=[Book(title="Notes", price=1.5)]))
        session.commit()
    with Session(engine) as session, pytest.raises(sa.exc.IntegrityError):
        session.add(Author(name="Ada"))
        session.commit()
    with engine.begin() as conn:
        conn.execute(sa.insert(Author.__table__), [{"name": "Grace"}, {"name": "Linus"}])
    engine.dispose()  # the last connection closes the replica: its final sync
    reader = sa.create_engine(engine_url(fresh_s3_url), connect_args={"impl": core})
    with Session(reader) as session:
        names = session.scalars(sa.select(Author.name).order_by(Author.id)).all()
        assert names == ["Ada", "Grace", "Linus"]
        assert session.scalars(sa.select(Book)).one().author.name == "Ada"
    reader.dispose()


def test_engine_url_forms(core: ModuleType, litestream_replica: LitestreamReplica,
                          tmp_path) -> None:
    for url in (f"sqlite+litevfs:///?replica={quote(litestream_replica.url, safe='')}",
                f"sqlite+litevfs:///?config={litestream_replica.config_path}"
                f"&db={litestream_replica.db_path}"):
        engine = sa.create_engine(url, connect_args={"impl": core})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM authors")).scalar() == 3
        engine.dispose()
    local = sa.create_engine(f"sqlite+litevfs:///{tmp_path / 'local.db'}")
    with local.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t(x)"))
    local.dispose()
    with pytest.raises(ValueError, match="secret_access_key"):
        sa.create_engine(engine_url(litestream_replica.url) + "&secret_access_key=s").connect()
    with pytest.raises(litevfs.ConfigError, match="unknown"):
        sa.create_engine(engine_url(litestream_replica.url) + "&pol_interval=1s").connect()


def test_engine_url_credentials_stay_masked(core: ModuleType,
                                            litestream_replica: LitestreamReplica) -> None:
    server = litestream_replica.server
    url = litestream_replica.url.replace("s3://", f"litevfs+s3://{server.access_key}:"
                                                  f"{quote(server.secret_key, safe='')}@")
    engine = sa.create_engine(url, connect_args={"impl": core})
    assert server.secret_key not in repr(engine) and server.secret_key not in str(engine.url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM authors")).scalar() == 3
    engine.dispose()


def test_pandas_read_sql_without_warnings(core: ModuleType,
                                          litestream_replica: LitestreamReplica) -> None:
    pd = pytest.importorskip("pandas")
    engine = sa.create_engine(engine_url(litestream_replica.url), connect_args={"impl": core})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = pd.read_sql("SELECT id, name FROM authors ORDER BY id", engine)
        con = dbapi2.connect(litestream_replica.url, impl=core)
        frame2 = pd.read_sql("SELECT id, name FROM authors WHERE id > ? ORDER BY id", con,
                             params=(1,))
    assert list(frame["name"]) == ["Ada", "Grace", "Linus"]
    assert list(frame2["id"]) == [2, 3]
    con.close()
    engine.dispose()


def test_sqlite_utils_database(core: ModuleType, litestream_replica: LitestreamReplica,
                               fresh_s3_url: str) -> None:
    sqlite_utils = pytest.importorskip("sqlite_utils")
    con = dbapi2.connect(litestream_replica.url, impl=core)
    db = sqlite_utils.Database(con)
    assert {"authors", "books"} <= set(db.table_names())
    assert db["authors"].count == 3
    assert [r["name"] for r in db.query("SELECT name FROM authors ORDER BY id")] == [
        "Ada", "Grace", "Linus"]
    assert db["books"].get(5)["title"] == "Book 5"
    con.close()
    writer = dbapi2.connect(fresh_s3_url, write=True, impl=core)
    wdb = sqlite_utils.Database(writer)
    wdb["dogs"].insert_all([{"id": 1, "name": "Cleo"}, {"id": 2, "name": "Pancakes"}], pk="id")
    assert wdb["dogs"].count == 2 and wdb["dogs"].pks == ["id"]
    writer.close()
