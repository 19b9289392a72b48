"""genjax_lab: generative models in JAX.

Importing the package turns on JAX's persistent compilation cache (see
genjax_lab.core.compilation: where it lives, how to move it or switch it off), so a program
compiled once on a machine loads from disk in later processes.
"""

from genjax_lab.core import compilation as _compilation

_compilation.enable_persistent_cache()
