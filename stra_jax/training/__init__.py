"""Training system: mesh/shardings (more to come: state, optimiser, step, loop)."""
