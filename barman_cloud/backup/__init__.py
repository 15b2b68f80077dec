"""Online base backups of a running PostgreSQL into a bucket, in barman-cloud's format.

- :mod:`~barman_cloud.backup.backup`: the orchestrator, :func:`~barman_cloud.backup.backup.take_backup`,
  its settings and result;
- :mod:`~barman_cloud.backup.postgres`: the psycopg session (metadata, start and stop);
- :mod:`~barman_cloud.backup.walk`: what goes into each archive, in barman's order and exclusions;
- :mod:`~barman_cloud.backup.tarstream`: the tar bytes, in chunks;
- :mod:`~barman_cloud.backup.encoders`: one compression stream per object, compressed in parallel;
- :mod:`~barman_cloud.backup.archives`: archives and their parts, read, compressed and uploaded as
  a pipeline;
- :mod:`~barman_cloud.backup.progress`: periodic progress log lines.
"""
