"""WAL archiving and restore in barman-cloud's layout: one segment (``archive``, ``restore``), the
queue that archives ahead of PostgreSQL (``archive_ahead``), the spool that restores ahead of it
(``prefetch``), and the empty-archive check (``check``)."""
