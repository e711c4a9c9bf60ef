"""Django database backend: ``ENGINE: "litevfs.django"`` (see ``base.py``)."""
