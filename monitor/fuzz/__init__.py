"""Translator-versus-interpreter equivalence fuzzing in every mode (issue 6;
docs/fuzzing.md): real mode, 16- and 32-bit ring 0, ring 3 and V8086.

* ``case``: a generated program, its layout and initial state;
* ``strategies`` (real mode, V8086 code), ``pmstrategies`` and ``pmenv``
  (protected modes: the guest's tables, code-segment regions): hypothesis
  strategies, importable;
* ``reference`` / ``pmreference`` (bare Unicorn owning the guest's state) and
  ``monitored`` / ``pmmonitored`` (hybrid86): the two paths; ``compare``: the
  verdict; ``flags``, ``smc``, ``ports``: what both paths need;
* ``campaign``: running, shrinking, reporting; ``cli``: ``hybrid86 fuzz``;
  ``longrun``: the long campaign.
"""
