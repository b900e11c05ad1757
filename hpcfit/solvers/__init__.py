"""Solvers as explicit states (Levenberg–Marquardt, Adam) and the one driver loop that runs any of
them over any evaluator. Nothing here calls MPI except through the driver's communicator."""
