-- v10: the inode change time in the hash cache.
--
-- file_hashes.ctime_ns: the master's st_ctime_ns when it was hashed, now part of the cache key.
--   A same-size rewrite in place whose mtime is then set back (touch -r, cp --preserve,
--   unzip -o of a reproducible archive) keeps (device, inode, size, mtime_ns) as they were,
--   but no user can set the ctime back. Rows from before this version have NULL here and are
--   never used: their files are hashed again and the rows replaced.

ALTER TABLE file_hashes ADD COLUMN ctime_ns BIGINT;
