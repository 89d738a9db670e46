"""Offline video -> WebDataset shard conversion (the engine behind ``data_prep/shard.py``).

``cli.main`` parses arguments; ``run.run_sharding`` does the work with ``pool.IsolatedProcessPool``
(crash/hang isolation), ``encode.encode_video`` (decode + resize + JPEG, one sample per video) and
``writer.AtomicShardWriter`` (temporary name, fsync, rename).
"""
