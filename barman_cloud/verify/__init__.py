"""Integrity of what is in a bucket: the checksum manifest of a backup's archives
(:mod:`.manifest`) and ``verify``, which re-reads a backup and the WAL it needs (:mod:`.engine`)."""
