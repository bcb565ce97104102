"""The pure kernel: every aggregate's decide/evolve, and the figures derived from state.

Imports only `contracts` and the standard library; no I/O, no clock (time is passed in).
Intake decides with it, the services project with it, reporting folds with it.
"""
