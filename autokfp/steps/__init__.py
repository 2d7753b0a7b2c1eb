"""Steps: one module per KFP component (files in, files out, a typed result).

Each component in components/<stage>/<name>/ calls exactly one function of
``autokfp.steps.<name>``; a notebook can call the same function directly.
"""

from autokfp.lifeline import watch_runner as _watch_runner

# a task started by ``autokfp run`` stops when the runner is gone (kill -9, SIGTERM, Ctrl-C)
_watch_runner()
