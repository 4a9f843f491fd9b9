"""Language-model backends behind one small interface (:class:`Generator`).

The interface is :mod:`core.generation.base`; the factory that picks and makes a backend
is :mod:`core.generation.factory`. Neither is imported here: importing any submodule runs
this file first, and the factory imports :mod:`core.memory.summary`, which imports the interface
(re-exporting the factory here would make that an import cycle).
"""
