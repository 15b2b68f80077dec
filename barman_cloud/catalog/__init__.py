"""The backup catalog of one server in a bucket, recomputed from listings as barman-cloud does.

There is no index in the bucket (barman-cloud-format.md 1.2): the catalog is one delimited listing
of ``<P>/<S>/base/`` plus a read of every ``backup.info``, concurrently. On top of it:

- :mod:`.listing`: readable backups (tolerant of unknown keys), unreadable ones reported apart;
- :mod:`.resolve`: backup IDs, shortcuts and names resolved exactly as barman 3.19 (1.3);
- :mod:`.keep`: keep annotations (one listing, with the E-20 double-slash quirk honoured);
- :mod:`.archives`: the tar objects of a backup, recognised by barman's rule (1.4);
- :mod:`.recovery_window`: first recoverability point, last successful and last failed backup;
- :mod:`.views`: barman-cloud-backup-list/-show's JSON and console views.
"""
