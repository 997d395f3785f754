"""tetrapipe: a stream worker for Cilium Tetragon events (one import package; see README, Architecture)."""
