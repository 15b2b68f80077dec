"""The barman-cloud 3.x bucket format in one place: WAL names and segment arithmetic, object keys,
compression suffixes and codecs, backup IDs and names, ``backup.info``. Nothing else in the engine
builds a key or parses a name (barman-cloud-format.md)."""
