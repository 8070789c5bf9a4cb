"""Files on disk: run directories, orbax checkpoints, rollout shards, videos and the one atomic writer."""
