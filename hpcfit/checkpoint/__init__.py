"""Checkpoint and restart: what a checkpoint holds (:mod:`.record`), how it is written and read
(:mod:`.hdf5`, atomically, serially or with parallel HDF5), the background writer (:mod:`.writer`),
stop signals (:mod:`.signals`) and the fit's view of all of it (:mod:`.session`)."""
