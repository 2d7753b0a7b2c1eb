"""Steps: one module per KFP component (files in, files out, a typed result).

Each component in components/<stage>/<name>/ calls exactly one function of
``autokfp.steps.<name>``; a notebook can call the same function directly.
"""
