"""Batch mastering jobs: specs, a bounded priority queue, memory-bounded admission, the engine.

- ``queue``: ``PriorityJobQueue``, bounded, thread-safe, highest priority first, FIFO within one.
- ``admission``: ``estimate_job_bytes`` and ``MemoryBudget`` (a job waits until it fits).
- ``engine``: ``JobSpec``, ``JobEngine`` (workers, progress events, cancellation, result cache).

``jobs`` may import ``mastering`` and ``library``; nothing below imports ``jobs``.
"""
