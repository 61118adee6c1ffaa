"""Translator-versus-interpreter equivalence fuzzing (issue 6; docs/fuzzing.md).

* ``case``: a generated program, its layout and initial state;
* ``strategies``: hypothesis strategies (importable);
* ``reference`` / ``monitored``: the two paths; ``compare``: the verdict;
* ``campaign``: running, shrinking, reporting; ``cli``: ``hybrid86 fuzz``.
"""
