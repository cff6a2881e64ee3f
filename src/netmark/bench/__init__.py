"""The engine under every study (the paper reproductions in :mod:`netmark.experiments` and ``netmark evaluate``
in :mod:`netmark.evaluation`).

* :mod:`.executors`: where the jobs of a study run (serial, a process pool, Ray), with per-job dependencies;
* :mod:`.roles`: data roles loaded once and digested for cache keys, fresh models from a seed;
* :mod:`.spec`: the fields every study's ``Scale`` and ``RunSpec`` share;
* :mod:`.study`: a reproduction's :class:`~.study.Study` declaration, its ``run(...)`` / ``render(...)`` entry points
  and their results block.

Trained runs and measured cells are keyed and stored by :mod:`netmark.bench.cache` (one cache for both).
"""
