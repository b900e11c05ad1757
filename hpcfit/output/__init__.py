"""What a fit leaves behind: result files (JSON, HDF5) and plots."""
