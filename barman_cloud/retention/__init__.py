"""Retention: which backups a policy keeps, deleting the others and the WAL they alone needed.

- :mod:`.policies`: ``REDUNDANCY n`` and ``RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`` as barman
  evaluates them (keep annotations, minimum redundancy, statuses VALID/OBSOLETE/KEEP/-);
- :mod:`.wal_cleanup`: barman's WAL cleanup algorithm, and where we deliberately differ;
- :mod:`.delete`: deleting by ID or by policy, backup.info last, dry runs.
"""
